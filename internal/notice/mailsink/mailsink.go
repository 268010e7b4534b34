// Package mailsink is an SMTP server that keeps what it receives in memory
// (github.com/emersion/go-smtp): tests and the benchmark send real mail over
// SMTP to it and read the messages back. It has no TLS and no
// authentication; it is not for production.
package mailsink

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/countersign/countersign/internal/config"
)

// Mail is one message as accepted.
type Mail struct {
	From string
	To   []string
	Data []byte
	At   time.Time // when the server accepted it
}

// Sink is a running server.
type Sink struct {
	server *smtp.Server
	ln     net.Listener

	mu    sync.Mutex
	mails []Mail
	fail  int // how many of the next messages to refuse
	ch    chan struct{}
}

// Start serves on a loopback port until Close.
func Start() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{ln: ln, ch: make(chan struct{}, 1)}
	s.server = smtp.NewServer(backend{s})
	s.server.Domain = "localhost"
	s.server.ReadTimeout = 10 * time.Second
	s.server.WriteTimeout = 10 * time.Second
	s.server.MaxMessageBytes = 10 << 20
	go func() { _ = s.server.Serve(ln) }()
	return s, nil
}

// Config is the mail setting that sends to this sink.
func (s *Sink) Config() config.SMTP {
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	n, _ := strconv.Atoi(port)
	return config.SMTP{Host: host, Port: n, From: "countersign@example.com", TLS: "none"}
}

// Close stops the server.
func (s *Sink) Close() error { return s.server.Close() }

// FailNext makes the server refuse the next n messages with a temporary error.
func (s *Sink) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = n
}

// Mails returns what was accepted so far.
func (s *Sink) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Wait waits until at least n messages were accepted or d passes, and
// returns what was accepted.
func (s *Sink) Wait(n int, d time.Duration) []Mail {
	deadline := time.After(d)
	for {
		if m := s.Mails(); len(m) >= n {
			return m
		}
		select {
		case <-s.ch:
		case <-deadline:
			return s.Mails()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type backend struct{ s *Sink }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s    *Sink
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.fail > 0 {
		x.s.fail--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	x.s.mails = append(x.s.mails, Mail{From: x.from, To: x.to, Data: buf.Bytes(), At: time.Now()})
	select {
	case x.s.ch <- struct{}{}:
	default:
	}
	return nil
}
