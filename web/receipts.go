package web

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/store"
)

// keysMaxAge is how long clients and proxies may cache the receipt keys. A
// new key is published before its first receipt goes out only to whoever
// asks after it is made, so a verifier that meets an unknown key id should
// fetch the keys again rather than wait this long.
const keysMaxAge = "public, max-age=300"

// handleReceiptKeys handles the "GET /api/v1/receipts/keys" and "GET
// /.well-known/countersign/receipt-keys" routes: the public keys that sign
// decision receipts, retired ones included, without authentication.
func (s *Server) handleReceiptKeys(c echo.Context) error {
	keys, err := s.Receipts.Keys(c.Request().Context())
	if err != nil {
		return err
	}
	// Public and the same for everyone: the no-store that every other
	// answer gets would make each verifier ask again.
	c.Response().Header().Set("Cache-Control", keysMaxAge)
	return c.JSON(http.StatusOK, receiptKeysJSON{Keys: mapSlice(keys, receiptKeyOf)})
}

// handleAPIRequestReceipt handles the "GET /api/v1/requests/:id/receipt"
// route: the signed receipt of a decided request, 404 while it is undecided.
func (s *Server) handleAPIRequestReceipt(c echo.Context) error {
	ctx := c.Request().Context()
	req, err := store.RequestGet(ctx, s.Pool, c.Param("id"))
	if err != nil {
		return err
	}
	// A request filed through the approvals API is that approval's: its
	// receipt names the approval here too, so that it is the same receipt
	// as the one GET /api/v1/approvals/{id} returns.
	approvalID := ""
	if req.Workflow == ask.Workflow {
		approvalID = req.RunID
	}
	r, err := s.Receipts.ForRequest(ctx, approvalID, req.ID)
	if err != nil {
		return err
	}
	if r == nil {
		return echo.NewHTTPError(http.StatusNotFound, "this request is not decided yet (or was cancelled undecided), so it has no receipt")
	}
	out, err := receiptOf(r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}
