// Package email is the notice.Channel that sends mail over SMTP with
// github.com/wneessen/go-mail: a plain-text part and an HTML part, each
// naming the action in plain words, its risk, rule and deadline, and a link to
// the console's page, where the decision is made after signing in (no link
// decides anything by itself).
package email

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/templates"
)

// Channel sends notices by mail.
type Channel struct {
	cfg     config.SMTP
	timeout time.Duration
}

// New returns the mail channel for cfg (its Host must be set).
func New(cfg config.SMTP) *Channel { return &Channel{cfg: cfg, timeout: 30 * time.Second} }

// Name implements notice.Channel.
func (*Channel) Name() string { return "email" }

// Send implements notice.Channel: one SMTP transaction per message.
func (c *Channel) Send(ctx context.Context, m notice.Message) error {
	if m.To.Email == "" {
		return fmt.Errorf("user %d has no mail address", m.To.UserID)
	}
	subject, text, html, err := Render(m)
	if err != nil {
		return err
	}
	msg := mail.NewMsg()
	if err := msg.From(c.cfg.From); err != nil {
		return fmt.Errorf("sender %q: %w", c.cfg.From, err)
	}
	if err := msg.To(m.To.Email); err != nil {
		return fmt.Errorf("recipient %q: %w", m.To.Email, err)
	}
	msg.Subject(subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(mail.TypeTextPlain, text)
	msg.AddAlternativeString(mail.TypeTextHTML, html)

	opts := []mail.Option{mail.WithPort(c.cfg.Port), mail.WithTimeout(c.timeout)}
	switch c.cfg.TLS {
	case "tls":
		opts = append(opts, mail.WithSSL())
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default: // starttls, required: a server that does not offer it gets nothing
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if c.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(c.cfg.Username), mail.WithPassword(c.cfg.Password))
	}
	client, err := mail.NewClient(c.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("mail client: %w", err)
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("send mail to %s: %w", m.To.Email, err)
	}
	return nil
}

// Render returns a message's subject, plain text and HTML. Model text in
// them has its invisible and reordering characters written out as
// ⟨U+XXXX⟩ tokens (templates.Visible, as the console shows them), and the
// HTML escapes it.
func Render(m notice.Message) (subject, text, html string, err error) {
	v := view{Name: m.To.Name, Digest: m.Digest()}
	for _, it := range m.Items {
		v.Items = append(v.Items, itemView(it))
	}
	if len(v.Items) == 1 {
		it := v.Items[0]
		subject = "Countersign: " + it.Title
		if it.Summary != "" {
			subject += " — " + plain(it.Summary)
		}
	} else {
		subject = fmt.Sprintf("Countersign: %d notifications", len(v.Items))
	}
	subject = clipRunes(subject, 150)
	var tb, hb bytes.Buffer
	if err := textTmpl.Execute(&tb, v); err != nil {
		return "", "", "", fmt.Errorf("render text mail: %w", err)
	}
	if err := htmlTmpl.Execute(&hb, v); err != nil {
		return "", "", "", fmt.Errorf("render html mail: %w", err)
	}
	return subject, tb.String(), hb.String(), nil
}

type view struct {
	Name   string
	Digest bool
	Items  []item
}

type item struct {
	Title, Action, Summary, Target, Risk, Rule, Detail, Link string
	Deadline                                                 string
	At                                                       string
}

// itemView spells an item out. Model text is cut to what a mail should
// carry; the review page shows all of it.
func itemView(it notice.Item) item {
	v := item{Title: it.Title, Summary: clipRunes(it.Summary, 300), Target: clipRunes(it.Target, 200), Risk: it.Risk,
		Rule: clipRunes(it.Rule, 200), Detail: clipRunes(it.Detail, 300), Link: it.Link, At: it.At.UTC().Format("2006-01-02 15:04 UTC")}
	if it.ActionKind != "" {
		v.Action = clipRunes(it.ActionKind, 100)
		if v.Target != "" {
			v.Action += " on " + v.Target
		}
	}
	if it.Deadline != nil {
		v.Deadline = it.Deadline.UTC().Format("2006-01-02 15:04 UTC")
	}
	return v
}

// plain writes s with its invisible characters as visible tokens.
func plain(s string) string {
	var b strings.Builder
	for _, p := range templates.Visible(s, false) {
		b.WriteString(p.Text)
	}
	return b.String()
}

// visibleHTML escapes s and marks its invisible characters, as the console does.
func visibleHTML(s string) template.HTML {
	var b strings.Builder
	for _, p := range templates.Visible(s, false) {
		if p.Mark {
			fmt.Fprintf(&b, `<span style="background:#fde68a" title="%s">%s</span>`, template.HTMLEscapeString(p.Title), template.HTMLEscapeString(p.Text))
		} else {
			b.WriteString(template.HTMLEscapeString(p.Text))
		}
	}
	return template.HTML(b.String()) //nolint:gosec // every piece is escaped above
}

func clipRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

var funcs = map[string]any{"plain": plain, "visible": visibleHTML}

var textTmpl = texttemplate.Must(texttemplate.New("text").Funcs(funcs).Parse(`{{if .Digest}}{{len .Items}} things need your attention in Countersign.{{else}}Countersign needs your attention.{{end}}
{{range .Items}}
== {{.Title}} ==
{{if .Action}}Action:   {{plain .Action}}
{{end}}{{if .Summary}}Summary:  {{plain .Summary}}
{{end}}{{if .Risk}}Risk:     {{plain .Risk}}
{{end}}{{if .Rule}}Rule:     {{plain .Rule}}
{{end}}{{if .Deadline}}Deadline: {{.Deadline}}
{{end}}{{if .Detail}}Detail:   {{plain .Detail}}
{{end}}When:     {{.At}}
{{if .Link}}Review it (you will be asked to sign in): {{.Link}}
{{end}}{{end}}
Nothing is decided from this mail: decisions are made on the review page.
Change what you receive at Settings → Notifications.
`))

// The HTML part escapes everything; model text goes through visible.
var htmlTmpl = template.Must(template.New("html").Funcs(funcs).Parse(`<!doctype html>
<html><body style="font-family:sans-serif">
<p>{{if .Digest}}{{len .Items}} things need your attention in Countersign.{{else}}Countersign needs your attention.{{end}}</p>
{{range .Items}}<div style="border:1px solid #ccc;padding:8px;margin:8px 0">
<h3 style="margin:0 0 4px">{{.Title}}</h3>
<table>
{{if .Action}}<tr><th align="left">Action</th><td>{{visible .Action}}</td></tr>{{end}}
{{if .Summary}}<tr><th align="left">Summary</th><td>{{visible .Summary}}</td></tr>{{end}}
{{if .Risk}}<tr><th align="left">Risk</th><td>{{visible .Risk}}</td></tr>{{end}}
{{if .Rule}}<tr><th align="left">Rule</th><td>{{visible .Rule}}</td></tr>{{end}}
{{if .Deadline}}<tr><th align="left">Deadline</th><td>{{.Deadline}}</td></tr>{{end}}
{{if .Detail}}<tr><th align="left">Detail</th><td>{{visible .Detail}}</td></tr>{{end}}
<tr><th align="left">When</th><td>{{.At}}</td></tr>
</table>
{{if .Link}}<p><a href="{{.Link}}">Open the review page</a> (you will be asked to sign in)</p>{{end}}
</div>{{end}}
<p>Nothing is decided from this mail: decisions are made on the review page.</p>
</body></html>
`))
