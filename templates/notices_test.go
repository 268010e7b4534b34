package templates

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"
)

// TestNoticeDeliveriesEmpty: an empty list of messages says why it is
// empty, and names the setting when no channel is configured.
func TestNoticeDeliveriesEmpty(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		v    NoticeDeliveriesView
		says string
	}{
		{"NoChannel", NoticeDeliveriesView{}, "COUNTERSIGN_SMTP_HOST"},
		{"NothingYet", NoticeDeliveriesView{Channels: []string{"email"}}, "No message yet."},
		{"NoFailure", NoticeDeliveriesView{Channels: []string{"email"}, FailedOnly: true}, "No message failed."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			require.NoError(t, NoticeDeliveries(Page{Title: "Notification deliveries"}, tc.v).Render(context.Background(), &buf))
			doc, err := goquery.NewDocumentFromReader(&buf)
			require.NoError(t, err)
			require.Contains(t, strings.TrimSpace(doc.Find("[data-testid=no-messages]").Text()), tc.says)
			require.Zero(t, doc.Find("[data-testid=deliveries]").Length())
		})
	}
}
