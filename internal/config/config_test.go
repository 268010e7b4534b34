package config

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFromEnv(t *testing.T) {
	env := map[string]string{"COUNTERSIGN_WORKERS": "7", "COUNTERSIGN_RESCUE_AFTER": "30m", "OPENAI_API_KEY": "sk-x",
		"COUNTERSIGN_MODEL_PROVIDER": "openai", "COUNTERSIGN_MODEL": "llama3.1", "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}
	c, err := FromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, DefaultDatabaseURL, c.DatabaseURL)
	require.Equal(t, ":8080", c.Addr)
	require.Equal(t, 7, c.Workers)
	require.Equal(t, 30*time.Minute, c.RescueAfter)
	require.Equal(t, "sk-x", c.ModelAPIKey)
	require.Equal(t, "http://127.0.0.1:11434/v1", c.ModelBaseURL)

	_, err = FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_RESCUE_AFTER": "soon"}[k] })
	require.ErrorContains(t, err, "COUNTERSIGN_RESCUE_AFTER must be a positive duration")
	c.ModelBaseURL = "ftp://x"
	require.ErrorContains(t, c.Validate(), "COUNTERSIGN_MODEL_BASE_URL must be an http(s) URL")
}

func TestMaxStepOutput(t *testing.T) {
	for v, want := range map[string]int{"": DefaultMaxStepOutput, "4096": 4096, "64KiB": 64 << 10, "2 MiB": 2 << 20} {
		c, err := FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_MAX_STEP_OUTPUT": v}[k] })
		require.NoError(t, err, v)
		require.NoError(t, c.Validate(), v)
		require.Equal(t, want, c.MaxStepOutput, v)
	}
	for _, v := range []string{"lots", "-5", "1.5MiB", "256KB", "0", "99999999999MiB"} {
		_, err := FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_MAX_STEP_OUTPUT": v}[k] })
		require.ErrorContains(t, err, "COUNTERSIGN_MAX_STEP_OUTPUT must be a size in bytes", v)
	}
	for _, v := range []string{"100", "65MiB"} {
		c, err := FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_MAX_STEP_OUTPUT": v}[k] })
		require.NoError(t, err, v)
		require.ErrorContains(t, c.Validate(), "COUNTERSIGN_MAX_STEP_OUTPUT must be between 1KiB and 64MiB", v)
	}
}

func TestSecuritySettings(t *testing.T) {
	from := func(env map[string]string) (Config, error) {
		c, err := FromEnv(func(k string) string { return env[k] })
		if err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	k1, k2 := strings.Repeat("ab", 64), strings.Repeat("cd", 64)

	c, err := from(map[string]string{"COUNTERSIGN_PUBLIC_URL": "https://cs.example.com/", "COUNTERSIGN_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7",
		"COUNTERSIGN_SESSION_KEY": k1 + "," + k2})
	require.NoError(t, err)
	require.Equal(t, "https://cs.example.com", c.PublicURL)
	require.Len(t, c.TrustedProxies, 2)
	require.True(t, c.TrustedProxies[1].Contains(net.ParseIP("192.0.2.7")))
	require.False(t, c.TrustedProxies[1].Contains(net.ParseIP("192.0.2.8")))
	allow, err := from(map[string]string{"COUNTERSIGN_CALLBACK_ALLOW": "127.0.0.1/32, hooks.internal"})
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1/32, hooks.internal", allow.CallbackAllow)
	keys, err := ParseSessionKeys(c.SessionKey)
	require.NoError(t, err)
	require.Len(t, keys, 2)

	for env, want := range map[string]string{
		"COUNTERSIGN_PUBLIC_URL=cs.example.com":           "COUNTERSIGN_PUBLIC_URL must be an origin",
		"COUNTERSIGN_PUBLIC_URL=https://cs.example.com/x": "COUNTERSIGN_PUBLIC_URL must be an origin",
		"COUNTERSIGN_TRUSTED_PROXIES=10.0.0.0/33":         "COUNTERSIGN_TRUSTED_PROXIES",
		"COUNTERSIGN_TRUSTED_PROXIES=proxy":               "COUNTERSIGN_TRUSTED_PROXIES",
		"COUNTERSIGN_SESSION_KEY=" + k1 + ",beef":         "key 2 is not 64 bytes",
		"COUNTERSIGN_SECURE_COOKIES=true":                 "COUNTERSIGN_PUBLIC_URL is required with HTTPS",
		"COUNTERSIGN_CALLBACK_ALLOW=10.0.0.0/33":          "COUNTERSIGN_CALLBACK_ALLOW",
		"COUNTERSIGN_CALLBACK_ALLOW=not a host":           "COUNTERSIGN_CALLBACK_ALLOW",
	} {
		k, v, _ := strings.Cut(env, "=")
		_, err := from(map[string]string{k: v})
		require.ErrorContains(t, err, want, env)
	}
}

// TestHTTPSNeedsPublicURL: behind HTTPS the browser sends the public https
// origin, so without COUNTERSIGN_PUBLIC_URL every console form would be
// refused; the process refuses to start with one line instead.
func TestHTTPSNeedsPublicURL(t *testing.T) {
	from := func(env map[string]string) error {
		c, err := FromEnv(func(k string) string { return env[k] })
		require.NoError(t, err)
		return c.Validate()
	}
	tls := map[string]string{"COUNTERSIGN_TLS_CERT": "cert.pem", "COUNTERSIGN_TLS_KEY": "key.pem"}
	proxy := map[string]string{"COUNTERSIGN_SECURE_COOKIES": "true"}
	for name, env := range map[string]map[string]string{"TLS": tls, "Proxy": proxy} {
		err := from(env)
		require.ErrorContains(t, err, "COUNTERSIGN_PUBLIC_URL is required with HTTPS", name)
		require.NotContains(t, err.Error(), "\n", name)
		env["COUNTERSIGN_PUBLIC_URL"] = "https://cs.example.com"
		require.NoError(t, from(env), name)
	}
	require.NoError(t, from(map[string]string{}), "plain http on loopback needs no setting")
}

func TestSMTP(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for name, tc := range map[string]struct {
		env  []string
		port int
		err  string
	}{
		"None":             {env: nil},
		"Starttls":         {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com", "COUNTERSIGN_SMTP_FROM", "cs@example.com"}, port: 587},
		"ImplicitTLS":      {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com", "COUNTERSIGN_SMTP_FROM", "cs@example.com", "COUNTERSIGN_SMTP_TLS", "tls"}, port: 465},
		"Relay":            {env: []string{"COUNTERSIGN_SMTP_HOST", "127.0.0.1", "COUNTERSIGN_SMTP_FROM", "cs@example.com", "COUNTERSIGN_SMTP_TLS", "none", "COUNTERSIGN_SMTP_PORT", "2525"}, port: 2525},
		"NoFrom":           {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com"}, err: "COUNTERSIGN_SMTP_FROM is required"},
		"BadFrom":          {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com", "COUNTERSIGN_SMTP_FROM", "not an address"}, err: "must be a mail address"},
		"BadTLS":           {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com", "COUNTERSIGN_SMTP_FROM", "cs@example.com", "COUNTERSIGN_SMTP_TLS", "maybe"}, err: "starttls, tls or none"},
		"BadPort":          {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com", "COUNTERSIGN_SMTP_FROM", "cs@example.com", "COUNTERSIGN_SMTP_PORT", "70000"}, err: "must be a port"},
		"HostWithPort":     {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com:25", "COUNTERSIGN_SMTP_FROM", "cs@example.com"}, err: "host name"},
		"CredentialsClear": {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com", "COUNTERSIGN_SMTP_FROM", "cs@example.com", "COUNTERSIGN_SMTP_TLS", "none", "COUNTERSIGN_SMTP_USERNAME", "u"}, err: "in clear"},
		"PasswordAlone":    {env: []string{"COUNTERSIGN_SMTP_HOST", "mail.example.com", "COUNTERSIGN_SMTP_FROM", "cs@example.com", "COUNTERSIGN_SMTP_PASSWORD", "p"}, err: "needs COUNTERSIGN_SMTP_USERNAME"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := FromEnv(env(tc.env...))
			require.NoError(t, err)
			err = c.Validate()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			if tc.port != 0 {
				require.Equal(t, tc.port, c.SMTP.Port)
			}
		})
	}
}

func TestSlack(t *testing.T) {
	t.Parallel()
	const secret = "8f742231b10e8888abcd99yyyzzz85a5"
	for name, tc := range map[string]struct {
		env         map[string]string
		err         string
		interactive bool
		api         string // the Web API's address, when not the default
	}{
		"None":           {env: nil},
		"Bot":            {env: map[string]string{"COUNTERSIGN_SLACK_BOT_TOKEN": "xoxb-1-2-abc"}},
		"BotInteractive": {env: map[string]string{"COUNTERSIGN_SLACK_BOT_TOKEN": "xoxb-1-2-abc", "COUNTERSIGN_SLACK_SIGNING_SECRET": secret, "COUNTERSIGN_SLACK_CHANNEL": "C0123"}, interactive: true},
		"Webhook":        {env: map[string]string{"COUNTERSIGN_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x"}},
		"Both":           {env: map[string]string{"COUNTERSIGN_SLACK_BOT_TOKEN": "xoxb-1", "COUNTERSIGN_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x"}, err: "not both"},
		"UserToken":      {env: map[string]string{"COUNTERSIGN_SLACK_BOT_TOKEN": "xoxp-1-2"}, err: "bot token"},
		"SecretAlone":    {env: map[string]string{"COUNTERSIGN_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x", "COUNTERSIGN_SLACK_SIGNING_SECRET": secret}, err: "needs COUNTERSIGN_SLACK_BOT_TOKEN"},
		"ShortSecret":    {env: map[string]string{"COUNTERSIGN_SLACK_BOT_TOKEN": "xoxb-1", "COUNTERSIGN_SLACK_SIGNING_SECRET": "short"}, err: "too short"},
		"ChannelAlone":   {env: map[string]string{"COUNTERSIGN_SLACK_CHANNEL": "C0123"}, err: "needs COUNTERSIGN_SLACK_BOT_TOKEN"},
		"BadWebhookURL":  {env: map[string]string{"COUNTERSIGN_SLACK_WEBHOOK_URL": "hooks.slack.com/x"}, err: "COUNTERSIGN_SLACK_WEBHOOK_URL"},
		"BadAPIURL":      {env: map[string]string{"COUNTERSIGN_SLACK_BOT_TOKEN": "xoxb-1", "COUNTERSIGN_SLACK_API_URL": "ftp://x"}, err: "COUNTERSIGN_SLACK_API_URL"},
		// The bot token and the webhook's path are credentials: never over plain http, but to this machine.
		"PlainAPIURL":     {env: map[string]string{"COUNTERSIGN_SLACK_BOT_TOKEN": "xoxb-1", "COUNTERSIGN_SLACK_API_URL": "http://slack.com/api"}, err: "must be https"},
		"PlainWebhookURL": {env: map[string]string{"COUNTERSIGN_SLACK_WEBHOOK_URL": "http://hooks.slack.com/services/T/B/x"}, err: "must be https"},
		"LocalAPIURL":     {env: map[string]string{"COUNTERSIGN_SLACK_BOT_TOKEN": "xoxb-1", "COUNTERSIGN_SLACK_API_URL": "http://127.0.0.1:9999/api"}, api: "http://127.0.0.1:9999/api"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := FromEnv(func(k string) string { return tc.env[k] })
			require.NoError(t, err)
			err = c.Validate()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.interactive, c.Slack.Interactive())
			api := "https://slack.com/api"
			if tc.api != "" {
				api = tc.api
			}
			require.Equal(t, api, c.Slack.APIURL)
		})
	}
}

func TestMetricsAddr(t *testing.T) {
	c, err := FromEnv(func(string) string { return "" })
	require.NoError(t, err)
	require.Empty(t, c.MetricsAddr, "off unless set")
	c, err = FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_METRICS_ADDR": "127.0.0.1:9464"}[k] })
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "127.0.0.1:9464", c.MetricsAddr)
	c.MetricsAddr = "9464"
	require.ErrorContains(t, c.Validate(), "COUNTERSIGN_METRICS_ADDR must be host:port or :port")
}
