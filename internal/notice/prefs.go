package notice

import (
	"fmt"
	"slices"
	"time"

	"github.com/countersign/countersign/internal/store"
)

// Prefs are the preferences that apply to one user.
type Prefs struct {
	Channels   []string
	Events     []string
	QuietStart int // minutes after midnight in Location
	QuietEnd   int
	Location   *time.Location
}

// Effective returns the preferences that apply to r: their own, else their
// role's defaults, else the built-in ones (email, every kind but the
// decision subscription, no quiet hours).
func Effective(r store.NoticeRecipient) Prefs {
	if r.Builtin {
		events := make([]string, 0, len(DefaultEvents()))
		for _, k := range DefaultEvents() {
			events = append(events, string(k))
		}
		return Prefs{Channels: []string{"email"}, Events: events, Location: time.UTC}
	}
	loc, err := time.LoadLocation(r.Prefs.TimeZone)
	if err != nil {
		loc = time.UTC // checked when saved; a zone database without it falls back to UTC
	}
	return Prefs{Channels: r.Prefs.Channels, Events: r.Prefs.Events, QuietStart: r.Prefs.QuietStart, QuietEnd: r.Prefs.QuietEnd, Location: loc}
}

// QuietUntil returns when a non-urgent message may go if it were ready at
// now: now itself outside quiet hours, else the end of them. Quiet hours may
// span midnight (22:00–07:00); start equal to end means none.
func (p Prefs) QuietUntil(now time.Time) time.Time {
	if p.QuietStart == p.QuietEnd {
		return now
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	local := now.In(loc)
	minute := local.Hour()*60 + local.Minute()
	var quiet bool
	if p.QuietStart < p.QuietEnd {
		quiet = minute >= p.QuietStart && minute < p.QuietEnd
	} else {
		quiet = minute >= p.QuietStart || minute < p.QuietEnd
	}
	if !quiet {
		return now
	}
	day := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
	end := day.Add(time.Duration(p.QuietEnd) * time.Minute)
	if !end.After(local) {
		end = day.AddDate(0, 0, 1).Add(time.Duration(p.QuietEnd) * time.Minute)
	}
	return end
}

// ErrInvalid is returned for preferences that cannot be stored.
var ErrInvalid = fmt.Errorf("invalid notification preferences")

// Check validates preferences a user or admin submits: known channels and
// kinds, minutes within a day, a time zone the process knows.
func Check(p store.NoticePrefs, channels []string) error {
	for _, c := range p.Channels {
		if !slices.Contains(channels, c) {
			return fmt.Errorf("%w: unknown channel %q", ErrInvalid, c)
		}
	}
	for _, e := range p.Events {
		if !Kind(e).Valid() {
			return fmt.Errorf("%w: unknown event %q", ErrInvalid, e)
		}
	}
	if p.QuietStart < 0 || p.QuietStart > 1439 || p.QuietEnd < 0 || p.QuietEnd > 1439 {
		return fmt.Errorf("%w: quiet hours must be times of day", ErrInvalid)
	}
	if len(p.TimeZone) > 64 {
		return fmt.Errorf("%w: time zone too long", ErrInvalid)
	}
	if _, err := time.LoadLocation(p.TimeZone); err != nil || p.TimeZone == "" || p.TimeZone == "Local" {
		return fmt.Errorf("%w: unknown time zone %q", ErrInvalid, p.TimeZone)
	}
	return nil
}
