package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// Notification pages: a user's own preferences, the admin's defaults per
// role, and the admin's list of messages with redelivery of failures.

// channels are the notification channels this installation sends through.
func (s *Server) channels() []string {
	if s.Notices == nil {
		return nil
	}
	return s.Notices.Channels()
}

// builtinPrefs are the preferences that apply with none set (notice.Effective).
func builtinPrefs() store.NoticePrefs {
	var events []string
	for _, k := range notice.DefaultEvents() {
		events = append(events, string(k))
	}
	return store.NoticePrefs{Channels: []string{"email"}, Events: events, TimeZone: "UTC"}
}

// prefsFromForm reads and checks a preferences form. Returns an error
// wrapping notice.ErrInvalid for anything that cannot be stored.
func (s *Server) prefsFromForm(c echo.Context) (store.NoticePrefs, error) {
	form, err := c.FormParams()
	if err != nil {
		return store.NoticePrefs{}, fmt.Errorf("%w: the form could not be read", notice.ErrInvalid)
	}
	if len(form["channel"]) > 16 || len(form["event"]) > 32 {
		return store.NoticePrefs{}, fmt.Errorf("%w: too many values", notice.ErrInvalid)
	}
	p := store.NoticePrefs{Channels: dedupe(form["channel"]), Events: dedupe(form["event"]), TimeZone: strings.TrimSpace(form.Get("time_zone"))}
	if p.TimeZone == "" {
		p.TimeZone = "UTC"
	}
	if p.QuietStart, err = minutesOf(form.Get("quiet_start")); err != nil {
		return p, err
	}
	if p.QuietEnd, err = minutesOf(form.Get("quiet_end")); err != nil {
		return p, err
	}
	return p, notice.Check(p, s.channels())
}

// minutesOf reads "HH:MM" (empty: midnight) as minutes after midnight.
func minutesOf(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	h, m, ok := strings.Cut(v, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(v) > 5 || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("%w: %q is not a time of day (HH:MM)", notice.ErrInvalid, v)
	}
	return hh*60 + mm, nil
}

func dedupe(vs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// settingsView reads the preferences that apply to u.
func (s *Server) settingsView(c echo.Context, u *store.User) (templates.NoticeSettingsView, error) {
	ctx := c.Request().Context()
	v := templates.NoticeSettingsView{Channels: s.channels()}
	own, err := store.NoticePreferenceGet(ctx, s.Pool, u.ID)
	switch {
	case err == nil:
		v.Own, v.Form = true, templates.NoticePrefsFormOf(*own)
		return v, nil
	case !errors.Is(err, store.ErrNotFound):
		return v, err
	}
	defaults, err := store.NoticeRoleDefaultList(ctx, s.Pool)
	if err != nil {
		return v, err
	}
	p, ok := defaults[u.Role]
	if !ok {
		p = builtinPrefs()
	}
	v.Form = templates.NoticePrefsFormOf(p)
	return v, nil
}

// handleNoticeSettings handles the "GET /settings/notifications" route.
func (s *Server) handleNoticeSettings(c echo.Context) error {
	v, err := s.settingsView(c, currentUser(c))
	if err != nil {
		return err
	}
	p := s.page(c, "Notifications", "settings")
	if c.QueryParam("saved") == "1" {
		p.Flash = "Your notification preferences are saved."
	}
	return render(c, http.StatusOK, templates.NoticeSettings(p, v))
}

// handleNoticeSettingsSave handles the "POST /settings/notifications" route:
// a user sets (or, with reset, removes) their own preferences.
func (s *Server) handleNoticeSettingsSave(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	if c.FormValue("reset") == "1" {
		if err := store.NoticePreferenceDelete(ctx, s.Pool, u.ID); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, "/settings/notifications?saved=1")
	}
	prefs, err := s.prefsFromForm(c)
	if err != nil {
		v, verr := s.settingsView(c, u)
		if verr != nil {
			return verr
		}
		v.Form = templates.NoticePrefsForm{Channels: prefs.Channels, Events: prefs.Events, QuietStart: c.FormValue("quiet_start"),
			QuietEnd: c.FormValue("quiet_end"), TimeZone: c.FormValue("time_zone")}
		p := s.page(c, "Notifications", "settings")
		p.Error = forPeople(err.Error())
		return render(c, http.StatusUnprocessableEntity, templates.NoticeSettings(p, v))
	}
	if err := store.NoticePreferenceSet(ctx, s.Pool, u.ID, prefs); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/settings/notifications?saved=1")
}

// defaultsView reads the defaults of every role.
func (s *Server) defaultsView(c echo.Context) (templates.NoticeDefaultsView, error) {
	defaults, err := store.NoticeRoleDefaultList(c.Request().Context(), s.Pool)
	if err != nil {
		return templates.NoticeDefaultsView{}, err
	}
	v := templates.NoticeDefaultsView{Roles: vocab.Roles(), Forms: map[vocab.Role]templates.NoticePrefsForm{},
		Set: map[vocab.Role]bool{}, Channels: s.channels()}
	for _, r := range v.Roles {
		p, ok := defaults[r]
		if !ok {
			p = builtinPrefs()
		}
		v.Forms[r], v.Set[r] = templates.NoticePrefsFormOf(p), ok
	}
	return v, nil
}

// handleNoticeDefaults handles the "GET /admin/notifications/defaults" route.
func (s *Server) handleNoticeDefaults(c echo.Context) error {
	v, err := s.defaultsView(c)
	if err != nil {
		return err
	}
	p := s.page(c, "Notification defaults", "notices")
	if r := vocab.Role(c.QueryParam("saved")); r.Valid() {
		p.Flash = fmt.Sprintf("The %s defaults are saved.", r)
	}
	return render(c, http.StatusOK, templates.NoticeDefaults(p, v))
}

// handleNoticeDefaultsSave handles the "POST /admin/notifications/defaults" route.
func (s *Server) handleNoticeDefaultsSave(c echo.Context) error {
	role := vocab.Role(c.FormValue("role"))
	if !role.Valid() {
		return echo.NewHTTPError(http.StatusBadRequest, "unknown role")
	}
	prefs, err := s.prefsFromForm(c)
	if err != nil {
		v, verr := s.defaultsView(c)
		if verr != nil {
			return verr
		}
		p := s.page(c, "Notification defaults", "notices")
		p.Error = fmt.Sprintf("The %s defaults were not saved: %s", role, err)
		return render(c, http.StatusUnprocessableEntity, templates.NoticeDefaults(p, v))
	}
	if err := store.NoticeRoleDefaultSet(c.Request().Context(), s.Pool, role, prefs); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/admin/notifications/defaults?saved="+string(role))
}

// noticePage is how many messages the deliveries page lists at once.
const noticePage = 100

// handleNoticeDeliveries handles the "GET /admin/notifications" route.
func (s *Server) handleNoticeDeliveries(c echo.Context) error {
	v := templates.NoticeDeliveriesView{FailedOnly: c.QueryParam("failed") == "1", Channels: s.channels()}
	var before int64
	if b := c.QueryParam("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "before must be a message id")
		}
		before = n
	}
	msgs, err := store.NoticeMessageList(c.Request().Context(), s.Pool, v.FailedOnly, before, noticePage+1)
	if err != nil {
		return err
	}
	if len(msgs) > noticePage {
		msgs = msgs[:noticePage]
		v.Next = msgs[len(msgs)-1].ID
	}
	v.Messages = msgs
	p := s.page(c, "Notification deliveries", "notices")
	if id := c.QueryParam("redelivered"); id != "" {
		if _, err := strconv.ParseInt(id, 10, 64); err == nil {
			p.Flash = "Message " + id + " is queued to be sent again."
		}
	}
	return render(c, http.StatusOK, templates.NoticeDeliveries(p, v))
}

// handleNoticeRedeliver handles the "POST /admin/notifications/:id/redeliver"
// route. Only a failed message can be sent again (404 otherwise).
func (s *Server) handleNoticeRedeliver(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "not a message id")
	}
	if s.Notices == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "notifications are not set up in this process")
	}
	if err := s.Notices.Redeliver(c.Request().Context(), id); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/admin/notifications?redelivered=%d", id))
}

// handleNoticeMessage handles the "GET /admin/notifications/:id" route: one
// message, its events and its attempts.
func (s *Server) handleNoticeMessage(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "not a message id")
	}
	ctx := c.Request().Context()
	m, err := store.NoticeMessageGet(ctx, s.Pool, id)
	if err != nil {
		return err
	}
	v := templates.NoticeMessageView{Message: m}
	if u, err := store.UserGet(ctx, s.Pool, m.UserID); err == nil {
		v.Email = u.Email
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if v.Events, err = store.NoticeMessageEvents(ctx, s.Pool, id); err != nil {
		return err
	}
	if v.Attempts, err = store.NoticeAttemptList(ctx, s.Pool, id); err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.NoticeMessage(s.page(c, fmt.Sprintf("Notification message %d", id), "notices"), v))
}
