// Package config reads Countersign's settings from the environment; command
// flags override them. Invalid settings are reported in one line.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/countersign/countersign/internal/safehttp"
)

// Config is every setting a process needs.
type Config struct {
	DatabaseURL string // DATABASE_URL
	Addr        string // COUNTERSIGN_ADDR, the web listener
	// MetricsAddr (COUNTERSIGN_METRICS_ADDR) serves GET /metrics without a
	// token on a listener of its own, for a Prometheus on a private network;
	// empty: only the main listener's /metrics, with a metrics:read token.
	MetricsAddr string

	Workers     int           // COUNTERSIGN_WORKERS, River workers per process
	RescueAfter time.Duration // COUNTERSIGN_RESCUE_AFTER: a job running longer is presumed crashed

	// Model provider: "offline" (the default) or "openai" for any
	// OpenAI-compatible server.
	ModelProvider string        // COUNTERSIGN_MODEL_PROVIDER
	ModelBaseURL  string        // COUNTERSIGN_MODEL_BASE_URL (OPENAI_BASE_URL)
	ModelAPIKey   string        // COUNTERSIGN_MODEL_API_KEY (OPENAI_API_KEY)
	ModelName     string        // COUNTERSIGN_MODEL
	ModelTimeout  time.Duration // COUNTERSIGN_MODEL_TIMEOUT

	// MaxStepOutput is the largest result a step, model call or effect may
	// record, and the largest action a run may propose, in bytes of JSON
	// (COUNTERSIGN_MAX_STEP_OUTPUT: bytes, or with a KiB or MiB suffix).
	MaxStepOutput int

	// SessionKey is 64 bytes in hex (COUNTERSIGN_SESSION_KEY): the session
	// cookie's signing and encryption keys. Several keys separated by commas
	// rotate them: the first signs new cookies, the others are still accepted
	// (keep an old key listed for sessionAbsolute, 12 hours, then drop it).
	// Empty: read from SessionKeyFile, or else generated once and stored in the
	// database (only for a database user other than countersign_app, which
	// cannot read it).
	SessionKey string
	// SessionKeyFile (COUNTERSIGN_SESSION_KEY_FILE) holds the keys instead,
	// one per line, newest first: a file the database role cannot read.
	SessionKeyFile string
	// PublicURL (COUNTERSIGN_PUBLIC_URL) is the origin users reach, such as
	// https://cs.example.com: console forms whose Origin differs are refused.
	// Empty: http://localhost:<port of Addr> (127.0.0.1 and [::1] too);
	// required when Secure.
	PublicURL string
	// TrustedProxies (COUNTERSIGN_TRUSTED_PROXIES, comma-separated CIDRs or
	// addresses) are the peers whose X-Forwarded-For names the client.
	TrustedProxies []*net.IPNet
	// TLSCert and TLSKey (COUNTERSIGN_TLS_CERT, COUNTERSIGN_TLS_KEY) make the
	// web side serve HTTPS itself.
	TLSCert, TLSKey string
	// Secure is true when the site is reached over HTTPS, directly or through
	// a proxy (COUNTERSIGN_SECURE_COOKIES=true): Secure __Host- cookies, HSTS.
	Secure bool
	// ReceiptKey (COUNTERSIGN_RECEIPT_KEY) is the path of the Ed25519 key
	// that signs decision receipts (PEM PKCS#8, or a 32-byte seed in hex).
	// Empty: a key generated on first use and stored in the database (only
	// for a database user other than countersign_app, which cannot read it).
	ReceiptKey string
	// CallbackAllow (COUNTERSIGN_CALLBACK_ALLOW: comma-separated CIDRs,
	// addresses and host names) lets callbacks reach addresses that are
	// otherwise refused: loopback, private, link-local and the like.
	CallbackAllow string

	// SMTP sends notification mail (internal/notice/email); no host: no mail.
	SMTP SMTP
	// Slack posts notifications to Slack (internal/notice/slack).
	Slack Slack
}

// Slack is how notifications reach Slack: a bot token (chat.postMessage,
// with Approve / Reject buttons when a signing secret is set) or an
// incoming webhook (a message with a link, no buttons).
type Slack struct {
	BotToken      string // COUNTERSIGN_SLACK_BOT_TOKEN (xoxb-…)
	Channel       string // COUNTERSIGN_SLACK_CHANNEL: post there instead of each reviewer's direct messages
	WebhookURL    string // COUNTERSIGN_SLACK_WEBHOOK_URL
	SigningSecret string // COUNTERSIGN_SLACK_SIGNING_SECRET: verifies interactions (buttons)
	APIURL        string // COUNTERSIGN_SLACK_API_URL, default https://slack.com/api (tests point it at a local server)
}

// Enabled reports whether Slack is configured at all.
func (s Slack) Enabled() bool { return s.BotToken != "" || s.WebhookURL != "" }

// Interactive reports whether messages carry decision buttons: that needs
// the bot token (to read who clicked) and the signing secret (to trust it).
func (s Slack) Interactive() bool { return s.BotToken != "" && s.SigningSecret != "" }

// SMTP is the mail server notifications go through.
type SMTP struct {
	Host     string // COUNTERSIGN_SMTP_HOST
	Port     int    // COUNTERSIGN_SMTP_PORT (default 587, 465 with tls, 25 with none)
	Username string // COUNTERSIGN_SMTP_USERNAME (no username: no authentication)
	Password string // COUNTERSIGN_SMTP_PASSWORD
	From     string // COUNTERSIGN_SMTP_FROM, the sender address
	// TLS (COUNTERSIGN_SMTP_TLS) is starttls (the default: required, not
	// opportunistic), tls (implicit TLS, port 465) or none (a local relay).
	TLS string
}

// Defaults.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/countersign?sslmode=disable"
	DefaultAddr        = ":8080"
	// DefaultMaxStepOutput is 256 KiB: far above any real proposal, far below
	// what would stall a review page.
	DefaultMaxStepOutput = 256 << 10
)

// Bounds of COUNTERSIGN_MAX_STEP_OUTPUT: below 1 KiB no real proposal fits;
// above 64 MiB one step's row would stall every page that shows it.
const (
	minStepOutput = 1 << 10
	maxStepOutput = 64 << 20
)

// FromEnv reads the environment through getenv (os.Getenv in production).
func FromEnv(getenv func(string) string) (Config, error) {
	get := func(key, def string) string {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			return v
		}
		return def
	}
	c := Config{
		DatabaseURL:    get("DATABASE_URL", DefaultDatabaseURL),
		Addr:           get("COUNTERSIGN_ADDR", DefaultAddr),
		MetricsAddr:    get("COUNTERSIGN_METRICS_ADDR", ""),
		ModelProvider:  get("COUNTERSIGN_MODEL_PROVIDER", "offline"),
		ModelBaseURL:   get("COUNTERSIGN_MODEL_BASE_URL", getenv("OPENAI_BASE_URL")),
		ModelAPIKey:    get("COUNTERSIGN_MODEL_API_KEY", getenv("OPENAI_API_KEY")),
		ModelName:      get("COUNTERSIGN_MODEL", ""),
		SessionKey:     get("COUNTERSIGN_SESSION_KEY", ""),
		SessionKeyFile: get("COUNTERSIGN_SESSION_KEY_FILE", ""),
		PublicURL:      strings.TrimSuffix(get("COUNTERSIGN_PUBLIC_URL", ""), "/"),
		TLSCert:        get("COUNTERSIGN_TLS_CERT", ""),
		TLSKey:         get("COUNTERSIGN_TLS_KEY", ""),
		ReceiptKey:     get("COUNTERSIGN_RECEIPT_KEY", ""),
		CallbackAllow:  get("COUNTERSIGN_CALLBACK_ALLOW", ""),
		SMTP: SMTP{Host: get("COUNTERSIGN_SMTP_HOST", ""), Username: get("COUNTERSIGN_SMTP_USERNAME", ""),
			Password: getenv("COUNTERSIGN_SMTP_PASSWORD"), From: get("COUNTERSIGN_SMTP_FROM", ""),
			TLS: get("COUNTERSIGN_SMTP_TLS", "starttls")},
		Slack: Slack{BotToken: getenv("COUNTERSIGN_SLACK_BOT_TOKEN"), Channel: get("COUNTERSIGN_SLACK_CHANNEL", ""),
			WebhookURL: getenv("COUNTERSIGN_SLACK_WEBHOOK_URL"), SigningSecret: getenv("COUNTERSIGN_SLACK_SIGNING_SECRET"),
			APIURL: strings.TrimSuffix(get("COUNTERSIGN_SLACK_API_URL", "https://slack.com/api"), "/")},
	}
	switch v := get("COUNTERSIGN_SECURE_COOKIES", "false"); v {
	case "true", "1":
		c.Secure = true
	case "false", "0":
	default:
		return c, fmt.Errorf("COUNTERSIGN_SECURE_COOKIES must be true or false, got %q", v)
	}
	if c.TLSCert != "" {
		c.Secure = true
	}
	var err error
	if c.TrustedProxies, err = ParseCIDRs(get("COUNTERSIGN_TRUSTED_PROXIES", "")); err != nil {
		return c, fmt.Errorf("COUNTERSIGN_TRUSTED_PROXIES: %w", err)
	}
	if c.Workers, err = intVar(get, "COUNTERSIGN_WORKERS", 20); err != nil {
		return c, err
	}
	if c.RescueAfter, err = durationVar(get, "COUNTERSIGN_RESCUE_AFTER", 15*time.Minute); err != nil {
		return c, err
	}
	if c.ModelTimeout, err = durationVar(get, "COUNTERSIGN_MODEL_TIMEOUT", 60*time.Second); err != nil {
		return c, err
	}
	if c.MaxStepOutput, err = sizeVar(get, "COUNTERSIGN_MAX_STEP_OUTPUT", DefaultMaxStepOutput); err != nil {
		return c, err
	}
	defPort := map[string]int{"tls": 465, "none": 25}[c.SMTP.TLS]
	if defPort == 0 {
		defPort = 587
	}
	if c.SMTP.Port, err = intVar(get, "COUNTERSIGN_SMTP_PORT", defPort); err != nil {
		return c, err
	}
	return c, nil
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	u, err := url.Parse(c.DatabaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return fmt.Errorf("DATABASE_URL must be a postgres:// URL, got %q", c.DatabaseURL)
	}
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("COUNTERSIGN_ADDR must be host:port or :port, got %q", c.Addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("COUNTERSIGN_ADDR has an invalid port %q", port)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("COUNTERSIGN_METRICS_ADDR must be host:port or :port, got %q", c.MetricsAddr)
		}
	}
	if c.Workers < 1 || c.Workers > 1000 {
		return fmt.Errorf("COUNTERSIGN_WORKERS must be between 1 and 1000, got %d", c.Workers)
	}
	if c.RescueAfter < 2*time.Second {
		return fmt.Errorf("COUNTERSIGN_RESCUE_AFTER must be at least 2s, got %s", c.RescueAfter)
	}
	// 0 is a Config built in code without the setting: the engine's default.
	if c.MaxStepOutput != 0 && (c.MaxStepOutput < minStepOutput || c.MaxStepOutput > maxStepOutput) {
		return fmt.Errorf("COUNTERSIGN_MAX_STEP_OUTPUT must be between 1KiB and 64MiB, got %d bytes", c.MaxStepOutput)
	}
	if c.SessionKey != "" {
		if _, err := ParseSessionKeys(c.SessionKey); err != nil {
			return fmt.Errorf("COUNTERSIGN_SESSION_KEY: %w", err)
		}
		if c.SessionKeyFile != "" {
			return errors.New("set COUNTERSIGN_SESSION_KEY or COUNTERSIGN_SESSION_KEY_FILE, not both")
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("COUNTERSIGN_PUBLIC_URL must be an origin such as https://cs.example.com, got %q", c.PublicURL)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("COUNTERSIGN_TLS_CERT and COUNTERSIGN_TLS_KEY go together")
	}
	// Behind HTTPS the browser's Origin is the public https origin, never the
	// loopback http default: without the setting every console form would be
	// refused, so refuse to start instead.
	if c.Secure && c.PublicURL == "" {
		return errors.New("COUNTERSIGN_PUBLIC_URL is required with HTTPS (COUNTERSIGN_SECURE_COOKIES=true or TLS): set it to the origin people reach, such as https://cs.example.com")
	}
	if _, err := safehttp.ParseAllow(c.CallbackAllow); err != nil {
		return fmt.Errorf("COUNTERSIGN_CALLBACK_ALLOW: %w", err)
	}
	if err := c.SMTP.validate(); err != nil {
		return err
	}
	if err := c.Slack.validate(); err != nil {
		return err
	}
	switch c.ModelProvider {
	case "offline":
	case "openai":
		if c.ModelName == "" {
			return errors.New("COUNTERSIGN_MODEL is required with COUNTERSIGN_MODEL_PROVIDER=openai")
		}
		if c.ModelBaseURL != "" {
			if u, err := url.Parse(c.ModelBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				return fmt.Errorf("COUNTERSIGN_MODEL_BASE_URL must be an http(s) URL, got %q", c.ModelBaseURL)
			}
		}
	default:
		return fmt.Errorf("COUNTERSIGN_MODEL_PROVIDER must be offline or openai, got %q", c.ModelProvider)
	}
	return nil
}

// ParseSessionKeys reads session keys separated by commas or newlines, newest
// first, each 64 bytes in hex. Returns an error naming the bad key's position.
func ParseSessionKeys(s string) ([][]byte, error) {
	var keys [][]byte
	for i, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		b, err := hex.DecodeString(f)
		if err != nil || len(b) != 64 {
			return nil, fmt.Errorf("key %d is not 64 bytes in hex (128 characters; openssl rand -hex 64)", i+1)
		}
		keys = append(keys, b)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key given")
	}
	return keys, nil
}

// ParseCIDRs reads comma-separated CIDRs; a bare address is its own /32 or /128.
func ParseCIDRs(s string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			ip := net.ParseIP(f)
			if ip == nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", f)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func intVar(get func(string, string) string, key string, def int) (int, error) {
	v := get(key, strconv.Itoa(def))
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s must be a whole number, got %q", key, v)
	}
	return n, nil
}

func durationVar(get func(string, string) string, key string, def time.Duration) (time.Duration, error) {
	v := get(key, def.String())
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s must be a positive duration such as 30s or 15m, got %q", key, v)
	}
	return d, nil
}

// sizeVar reads a size in bytes: a whole number, or one with a KiB or MiB
// suffix ("256KiB", "1 MiB").
func sizeVar(get func(string, string) string, key string, def int) (int, error) {
	v := get(key, strconv.Itoa(def))
	num, unit := v, 1
	for suffix, n := range map[string]int{"KiB": 1 << 10, "MiB": 1 << 20} {
		if s, ok := strings.CutSuffix(v, suffix); ok {
			num, unit = strings.TrimSpace(s), n
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || n > math.MaxInt32/unit {
		return 0, fmt.Errorf("%s must be a size in bytes such as 262144, 256KiB or 1MiB, got %q", key, v)
	}
	return n * unit, nil
}

// validate checks the mail settings when a host is set.
func (s SMTP) validate() error {
	if s.Host == "" {
		return nil
	}
	if strings.ContainsAny(s.Host, "/:@ ") {
		return fmt.Errorf("COUNTERSIGN_SMTP_HOST must be a host name or address, got %q", s.Host)
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("COUNTERSIGN_SMTP_PORT must be a port, got %d", s.Port)
	}
	switch s.TLS {
	case "starttls", "tls", "none":
	default:
		return fmt.Errorf("COUNTERSIGN_SMTP_TLS must be starttls, tls or none, got %q", s.TLS)
	}
	if s.From == "" {
		return errors.New("COUNTERSIGN_SMTP_FROM is required with COUNTERSIGN_SMTP_HOST")
	}
	if a, err := mail.ParseAddress(s.From); err != nil || a.Address == "" {
		return fmt.Errorf("COUNTERSIGN_SMTP_FROM must be a mail address, got %q", s.From)
	}
	if s.Password != "" && s.Username == "" {
		return errors.New("COUNTERSIGN_SMTP_PASSWORD needs COUNTERSIGN_SMTP_USERNAME")
	}
	// Credentials over an unencrypted connection would go in clear.
	if s.Username != "" && s.TLS == "none" {
		return errors.New("COUNTERSIGN_SMTP_USERNAME needs COUNTERSIGN_SMTP_TLS starttls or tls: credentials would go in clear")
	}
	return nil
}

func (s Slack) validate() error {
	switch {
	case s.BotToken != "" && s.WebhookURL != "":
		return errors.New("set COUNTERSIGN_SLACK_BOT_TOKEN or COUNTERSIGN_SLACK_WEBHOOK_URL, not both")
	case s.BotToken != "" && (!strings.HasPrefix(s.BotToken, "xoxb-") || strings.ContainsAny(s.BotToken, " \t\r\n")):
		return errors.New("COUNTERSIGN_SLACK_BOT_TOKEN must be a bot token (xoxb-…)")
	case s.SigningSecret != "" && s.BotToken == "":
		return errors.New("COUNTERSIGN_SLACK_SIGNING_SECRET needs COUNTERSIGN_SLACK_BOT_TOKEN: buttons are answered through the bot")
	case s.SigningSecret != "" && len(s.SigningSecret) < 16:
		return errors.New("COUNTERSIGN_SLACK_SIGNING_SECRET is too short to be a Slack signing secret")
	case s.Channel != "" && s.BotToken == "":
		return errors.New("COUNTERSIGN_SLACK_CHANNEL needs COUNTERSIGN_SLACK_BOT_TOKEN (an incoming webhook posts to its own channel)")
	case len(s.Channel) > 80 || strings.ContainsAny(s.Channel, " <>&"):
		return fmt.Errorf("COUNTERSIGN_SLACK_CHANNEL must be a channel id or name, got %q", s.Channel)
	}
	if s.WebhookURL != "" {
		if err := credentialURL(s.WebhookURL); err != nil {
			return fmt.Errorf("COUNTERSIGN_SLACK_WEBHOOK_URL: %w", err)
		}
	}
	if s.BotToken != "" {
		if err := credentialURL(s.APIURL); err != nil {
			return fmt.Errorf("COUNTERSIGN_SLACK_API_URL: %w", err)
		}
	}
	return nil
}

// credentialURL checks a URL that is sent a credential (the Slack bot token
// in a header, or the incoming webhook's secret path): an http(s) URL, and
// https unless it names this machine (a local stand-in in tests), so that
// the credential never travels in clear.
func credentialURL(raw string) error {
	if err := httpURL(raw); err != nil {
		return err
	}
	u, _ := url.Parse(raw)
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return errors.New("must be https: it is sent the Slack credential, which would go in clear")
}

// httpURL checks that raw is an absolute http or https URL with a host and
// no credentials.
func httpURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return errors.New("must be an http(s) URL with a host and no credentials")
	}
	return nil
}
