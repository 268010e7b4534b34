package store

// RequestListInboxSQL is the inbox query, for the test that its plan walks
// the inbox index.
var RequestListInboxSQL = withInboxFilter(requestListInboxSQL)
