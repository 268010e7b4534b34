// Package notify holds one LISTEN connection per process on the countersign
// channel and fans its messages out to in-process subscribers (live pages,
// the policy cache). Slow subscribers miss messages rather than block others.
package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/store"
)

// Send signals m to every process's listener. Sent in a transaction, it is
// delivered when that commits, and not at all if it rolls back.
func Send(ctx context.Context, db store.DBTX, m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	return store.Notify(ctx, db, string(b))
}

// Kind is what a message is about.
type Kind string

// The kinds of messages.
const (
	// KindRun: a run changed status.
	KindRun Kind = "run"
	// KindRequest: a run asked for a human decision.
	KindRequest Kind = "request"
	// KindDecision: a request was decided, or got a vote or an escalation.
	KindDecision Kind = "decision"
	// KindBatch: a batch became ready or was decided.
	KindBatch Kind = "batch"
	// KindClaim: a reviewer claimed a request or let a claim go.
	KindClaim Kind = "claim"
	// KindPolicy: a policy version was activated.
	KindPolicy Kind = "policy"
	// Connected is the message every subscriber gets when the listener
	// (re)connects: notifications sent while it was not listening are
	// lost, so whoever caches anything should refresh.
	Connected Kind = "connected"
)

// Message is one notification.
type Message struct {
	Type   Kind   `json:"type"`
	ID     string `json:"id"`
	RunID  string `json:"run_id,omitempty"`
	Status string `json:"status,omitempty"`
	Tier   string `json:"tier,omitempty"`
}

// Listener fans notifications out to subscribers.
type Listener struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	mu    sync.Mutex
	subs  map[chan Message]struct{}
	ready chan struct{}
	once  sync.Once
	// recent holds the messages delivered lately, published in this
	// process (Publish) or from the database, with when and from where: a
	// message that comes both ways, the usual case for a change committed
	// here, is delivered once, by whichever comes first.
	recent    map[Message]seen
	lastPrune time.Time
}

// seen is when a message was delivered, and whether by Publish.
type seen struct {
	at    time.Time
	local bool
}

// dedupeWindow bounds how long a delivered message waits for its copy from
// the other way (and is dropped as a repeat); one that never comes (the
// notifying transaction rolled back, the listener reconnected, a change of
// another process) is forgotten after it.
const dedupeWindow = 10 * time.Second

// NewListener returns a listener; call Run to start it.
func NewListener(pool *pgxpool.Pool, logger *slog.Logger) *Listener {
	return &Listener{pool: pool, logger: logger, subs: map[chan Message]struct{}{}, ready: make(chan struct{}),
		recent: map[Message]seen{}}
}

// Publish delivers m to this process's subscribers at once, for a change
// that has committed and whose notification (sent in its transaction, or
// by a Coalescer) is on its way to every process's listener: waiters here
// (a long poll, an open inbox) need not wait for the database to deliver
// it, a round trip through the notification queue that a busy server
// delays. When that notification arrives it is not delivered again; when
// it came first, m is not.
func (l *Listener) Publish(m Message) {
	if l == nil {
		return
	}
	l.deliverOnce(m, true)
}

// Ready is closed once the listener first listens.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Subscribe returns a channel of messages and a function to stop receiving.
func (l *Listener) Subscribe(buffer int) (<-chan Message, func()) {
	ch := make(chan Message, buffer)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

// Run listens until ctx ends, reconnecting after a lost connection.
func (l *Listener) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := l.listen(ctx); err != nil && ctx.Err() == nil {
			l.logger.Warn("notification listener lost its connection; reconnecting", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (l *Listener) listen(ctx context.Context) error {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A LISTEN connection must not go back to the pool still listening.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := pc.Exec(ctx, "LISTEN countersign"); err != nil {
		return err
	}
	l.publish(Message{Type: Connected})
	l.once.Do(func() { close(l.ready) })
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var m Message
		if err := json.Unmarshal([]byte(n.Payload), &m); err != nil {
			continue
		}
		l.deliver(m)
	}
}

// deliver fans out a notification from the database, unless this process
// published it already (Publish).
func (l *Listener) deliver(m Message) { l.deliverOnce(m, false) }

// deliverOnce delivers m, which came by Publish (local) or from the database,
// unless it came the other way within dedupeWindow.
func (l *Listener) deliverOnce(m Message, local bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) > dedupeWindow {
		for k, s := range l.recent {
			if now.Sub(s.at) > dedupeWindow {
				delete(l.recent, k)
			}
		}
		l.lastPrune = now
	}
	if s, ok := l.recent[m]; ok && s.local != local && now.Sub(s.at) <= dedupeWindow {
		delete(l.recent, m) // its two copies are in: a third is a new change
		return
	}
	l.recent[m] = seen{at: now, local: local}
	l.fanOut(m)
}

func (l *Listener) publish(m Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fanOut(m)
}

// fanOut sends m to every subscriber; l.mu is held.
func (l *Listener) fanOut(m Message) {
	for ch := range l.subs {
		select {
		case ch <- m:
		default:
		}
	}
}

// maxQueued bounds the messages a Coalescer holds while a send is in
// flight; past it, new ones are dropped (a lost signal only delays a page's
// refresh).
const maxQueued = 10000

// Coalescer sends messages that need not commit with anything (signals
// sent after a commit) several at a time: while one statement is in flight,
// the messages that arrive meanwhile wait and go together in the next, so
// that under load many signals cost one round trip and one transaction,
// and a lone signal goes at once.
type Coalescer struct {
	db     store.DBTX
	logger *slog.Logger
	local  *Listener // this process's, which gets each message at once (SetLocal)

	mu      sync.Mutex
	queue   []string
	sending bool
	idle    *sync.Cond // signalled when a drain ends (Flush)
}

// NewCoalescer returns a Coalescer sending on db (a pool).
func NewCoalescer(db store.DBTX, logger *slog.Logger) *Coalescer {
	if logger == nil {
		logger = slog.Default()
	}
	return &Coalescer{db: db, logger: logger}
}

// SetLocal has every message sent also published at once to l's
// subscribers (Listener.Publish), this process's waiters. Call it before
// the first Send.
func (c *Coalescer) SetLocal(l *Listener) {
	if c != nil {
		c.local = l
	}
}

// Local publishes m to this process's subscribers only, for a change whose
// own transaction notified the other processes (a decision): nil without
// SetLocal, or on a nil Coalescer.
func (c *Coalescer) Local(m Message) {
	if c != nil && c.local != nil {
		c.local.Publish(m)
	}
}

// Send queues m and returns at once; an encoding error is returned, a
// failed send only logged. A nil Coalescer (an engine without a pool: a
// replay) sends nothing.
func (c *Coalescer) Send(m Message) error {
	if c == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	if c.local != nil {
		c.local.Publish(m)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) >= maxQueued {
		return nil
	}
	c.queue = append(c.queue, string(b))
	if !c.sending {
		c.sending = true
		go c.drain()
	}
	return nil
}

// Flush waits until every message queued so far has been sent (or its
// send failed). A process calls it before closing the pool the sends use,
// so that no drain outlives it.
func (c *Coalescer) Flush() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle == nil {
		c.idle = sync.NewCond(&c.mu)
	}
	for c.sending {
		c.idle.Wait()
	}
}

func (c *Coalescer) drain() {
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			c.sending = false
			if c.idle != nil {
				c.idle.Broadcast()
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := store.NotifyMany(ctx, c.db, batch); err != nil {
			c.logger.Warn("send notifications", "n", len(batch), "err", err)
		}
		cancel()
	}
}
