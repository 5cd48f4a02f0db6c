package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/deadline"
	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// worker runs requests one at a time. What it runs is kept so that a stop
// can abandon a handler that does not return: answer its caller, or give its
// request back, and drop whatever the handler returns later.
type worker struct {
	mu        sync.Mutex
	busy      bool
	abandoned bool
	job       lists.Msg
	reply, id string // where the response goes, once decoded
	fn        string
	start     time.Time
	stream    *streamStart // of a stream request, else nil
	lone      *lone        // of a lone request its loop runs (lone.go), else nil; only its goroutine uses it
}

// begin marks the worker running req, decoded from job.
func (w *worker) begin(job lists.Msg, req *wire.Request, start time.Time) {
	w.mu.Lock()
	w.busy, w.job, w.reply, w.id, w.fn, w.start, w.stream = true, job, req.ResponseQueue, req.ID, req.FunctionCall.Name, start, nil
	w.mu.Unlock()
}

// end marks the request done and reports whether it is still this worker's
// to answer, not abandoned by a stop.
func (w *worker) end() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	ours := !w.abandoned
	w.busy, w.abandoned = false, false
	return ours
}

// startWorker starts a worker for msg, which then serves work until it closes.
// Workers live as long as Serve so that their grown stacks serve many requests.
func (r *run) startWorker(msg lists.Msg) {
	w := &worker{}
	r.mu.Lock()
	r.workers[w] = true
	r.mu.Unlock()
	go func() {
		defer r.workerDone(w)
		// Each request's context is a child of this one, not of handlers, so
		// that workers do not contend for one context's lock registering them.
		ctx, cancel := context.WithCancel(r.handlers)
		defer cancel()
		r.serveOne(ctx, w, msg)
		for msg := range r.work {
			r.serveOne(ctx, w, msg)
		}
	}()
}

func (r *run) workerDone(w *worker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.workers, w)
	if r.closing && len(r.workers) == 0 {
		close(r.idle)
	}
}

// abandon gives up on the handler w runs, if any: its caller gets
// CodeUnavailable at most once, and its request goes back to the queue at
// least once.
func (r *run) abandon(w *worker) {
	w.mu.Lock()
	if !w.busy || w.abandoned {
		w.mu.Unlock()
		return
	}
	w.abandoned = true
	job, reply, id, fn, start, stream := w.job, w.reply, w.id, w.fn, w.start, w.stream
	w.mu.Unlock()
	r.s.log.Error("redisrpc: a handler did not return after the server stopped; its result will be dropped",
		"queue", r.s.cfg.Queue, "function", fn, "id", id, "running_for", time.Since(start).Round(time.Millisecond))
	if st := streamOf(stream); st != nil {
		// A stream started is not given back (at most once): it ends, and
		// its caller is told.
		st.Abort(errStopped)
		r.s.pusher.Push(lists.Item{Key: reply, Value: rueidis.BinaryString(wire.AppendResponse(nil, ptr(wire.Failure(id, wire.CodeUnavailable, errStopped.Error())))),
			Until: time.Now().Add(time.Minute)})
		return
	}
	if r.s.cfg.Reliable {
		r.giveBack([]lists.Msg{job})
		return
	}
	if reply != "" {
		r.respond(reply, wire.Failure(id, wire.CodeUnavailable, errStopped.Error()), job)
	}
}

// serveOne handles one raw request.
func (r *run) serveOne(base context.Context, w *worker, job lists.Msg) {
	defer func() {
		r.s.done.Add(1)
		r.release(1)
	}()
	req, ok := r.decode(job)
	if !ok {
		return
	}
	if req.Attempt > 1 && r.answeredBefore(job, &req) {
		return
	}
	w.begin(job, &req, time.Now())
	ctx := base
	if req.Deadline != 0 {
		// No timer unless the handler waits on ctx; see package deadline.
		dctx := deadline.New(ctx, time.UnixMilli(req.Deadline))
		defer dctx.Stop()
		ctx = dctx
	}
	returned := false
	defer func() {
		if !returned { // the handler called runtime.Goexit, which ends this goroutine
			r.s.log.Error("redisrpc: a handler exited without returning (runtime.Goexit)", "queue", r.s.cfg.Queue, "function", req.FunctionCall.Name)
			r.settle(ctx, w, job, &req, wire.Failure(req.ID, wire.CodeInternal, "the handler of "+req.FunctionCall.Name+" exited without returning"))
		}
	}()
	var stream *streamStart
	if req.Stream > 0 {
		stream = &streamStart{r: r, job: job}
		ctx = context.WithValue(ctx, streamKey{}, stream)
		w.mu.Lock()
		w.stream = stream
		w.mu.Unlock()
	}
	resp := r.call(ctx, &req)
	returned = true
	if stream != nil && stream.opened {
		r.settleStream(w, &req, resp)
		return
	}
	r.settle(ctx, w, job, &req, resp)
}

func ptr[T any](v T) *T { return &v }

// settleStream sends the end of a stream whose request has left its
// processing list already (Open): owed to its deadline, or a minute.
func (r *run) settleStream(w *worker, req *wire.Request, resp wire.Response) {
	if !w.end() {
		return
	}
	body := wire.AppendResponse(make([]byte, 0, 64+len(resp.ID)+len(resp.Exception)), &resp)
	r.s.pusher.Push(lists.Item{Key: req.ResponseQueue, Value: rueidis.BinaryString(body), Until: r.until(req)})
}

// answeredBefore looks for the kept answer to req, sent again by its
// client, where the server keeps answers, and reports whether req is
// settled without running: answered
// from it, or, where Redis could not say, left in the processing list for
// a beat to give back (Source.Beat), to be looked up again.
func (r *run) answeredBefore(job lists.Msg, req *wire.Request) bool {
	key := r.s.source.Kept(job, req.ResponseQueue, req.ID)
	if key == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	kept, err := r.s.rc.Do(ctx, r.s.rc.B().Get().Key(key).Build()).ToString()
	switch {
	case rueidis.IsRedisNil(err):
		return false
	case err != nil:
		r.s.taking.Fail(err)
		list, ack := r.s.source.Ack(job)
		r.s.source.Settled(list, ack)
		return true
	}
	it := lists.Item{Key: req.ResponseQueue, Value: kept, Until: r.until(req)}
	it.AckList, it.Ack = r.s.source.Ack(job)
	r.s.pusher.Push(it)
	return true
}

// until is how long the answer to req is owed: to its deadline, or a
// minute where it has none.
func (r *run) until(req *wire.Request) time.Time {
	if req.Deadline != 0 {
		return time.UnixMilli(req.Deadline)
	}
	return time.Now().Add(time.Minute)
}

// call runs the handler of req, turning a panic into an internal error.
func (r *run) call(ctx context.Context, req *wire.Request) (resp wire.Response) {
	defer func() {
		if p := recover(); p != nil {
			name := req.FunctionCall.Name
			r.s.log.Error("redisrpc: panic serving a request", "queue", r.s.cfg.Queue, "function", name, "panic", p, "stack", string(debug.Stack()))
			resp = wire.Failure(req.ID, wire.CodeInternal, "internal error in "+name)
		}
	}()
	return r.s.invoke(ctx, req)
}

// CutOff reports whether a stop cut off the handler whose context is ctx.
// Invoke answers such a handler's failure with CodeUnavailable.
func CutOff(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errStopped) }

// settle sends resp unless a stop abandoned the request. At least once, a
// handler that a stop cut off and that answered CodeUnavailable is not
// answered: its request goes back to the queue for another server.
func (r *run) settle(ctx context.Context, w *worker, job lists.Msg, req *wire.Request, resp wire.Response) {
	if !w.end() {
		return
	}
	unavailable := resp.Failed() && resp.Code == wire.CodeUnavailable
	if r.s.cfg.Reliable && unavailable && CutOff(ctx) {
		r.giveBack([]lists.Msg{job})
		return
	}
	if !r.s.cfg.Reliable {
		it := r.item(req.ResponseQueue, resp, job)
		if w.lone == nil || !w.lone.answer(it) {
			r.s.pusher.Push(it)
		}
		return
	}
	// At least once the answer is owed until the caller stops waiting: a
	// push that fails is tried again, and the request stays held meanwhile.
	it := r.item(req.ResponseQueue, resp, job)
	it.Until = r.until(req)
	if !unavailable { // an answer that says to try again is not kept: the retry must run
		it.Keep, it.KeepTTL = r.s.source.Kept(job, req.ResponseQueue, req.ID), r.s.keepFor(req)
	}
	r.s.pusher.Push(it)
}

// decode decodes job, and answers or drops it where it cannot be run.
func (r *run) decode(job lists.Msg) (req wire.Request, ok bool) {
	s := r.s
	msg := job.Body
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("redisrpc: dropped a request that broke the decoder", "queue", s.cfg.Queue, "panic", p, "stack", string(debug.Stack()), "message", wire.Clip(msg))
			r.drop(job)
			ok = false
		}
	}()
	if len(msg) > s.cfg.MaxMessage {
		queue, id := wire.PeekReply(msg)
		r.reject(job, queue, id, fmt.Sprintf("request of %d bytes is over the limit of %d", len(msg), s.cfg.MaxMessage))
		return req, false
	}
	req, err := wire.DecodeRequest(msg)
	if err != nil {
		if !wire.ValidResponseQueue(s.cfg.Queue, req.ResponseQueue) { // not JSON: look in place
			req.ResponseQueue, req.ID = wire.PeekReply(msg)
		}
		r.reject(job, req.ResponseQueue, req.ID, err.Error())
		return req, false
	}
	if !wire.ValidResponseQueue(s.cfg.Queue, req.ResponseQueue) {
		s.log.Warn("redisrpc: dropped a request whose response queue is outside the namespace",
			"queue", s.cfg.Queue, "response_queue", wire.Clip(req.ResponseQueue), "function", wire.Clip(req.FunctionCall.Name))
		r.drop(job)
		return req, false
	}
	if req.Deadline != 0 && !time.Now().Before(time.UnixMilli(req.Deadline)) {
		// The caller has stopped waiting: running it would be wasted work.
		s.log.Debug("redisrpc: dropped a request past its deadline", "queue", s.cfg.Queue, "function", req.FunctionCall.Name)
		r.drop(job)
		return req, false
	}
	return req, true
}

// reject answers a bad request with CodeInvalidArgument where it names a valid
// response queue, and logs and drops it where it does not.
func (r *run) reject(job lists.Msg, queue, id, why string) {
	s := r.s
	if !wire.ValidResponseQueue(s.cfg.Queue, queue) {
		s.log.Warn("redisrpc: dropped a bad request", "queue", s.cfg.Queue, "why", why, "message", wire.Clip(job.Body))
		r.drop(job)
		return
	}
	s.log.Warn("redisrpc: answered a bad request", "queue", s.cfg.Queue, "why", why, "message", wire.Clip(job.Body))
	r.respond(queue, wire.Failure(id, wire.CodeInvalidArgument, why), job)
}

// drop forgets a request that gets no response.
func (r *run) drop(job lists.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	if err := r.s.source.Drop(ctx, job); err != nil {
		r.s.log.Error("redisrpc: removing a dropped request from the processing list", "queue", r.s.cfg.Queue, "err", err)
	}
}

// respond queues resp for its list; responses queued together go out in one
// RPUSH per list, with one EXPIRE, pipelined by rueidis with other traffic.
// At least once, the request leaves its processing list after.
func (r *run) respond(key string, resp wire.Response, job lists.Msg) {
	r.s.pusher.Push(r.item(key, resp, job))
}

// item is the push of resp to the list key, which removes job from its
// processing list, if any.
func (r *run) item(key string, resp wire.Response, job lists.Msg) lists.Item {
	body := wire.AppendResponse(make([]byte, 0, 48+len(resp.ID)+len(resp.ReturnValue)+len(resp.Exception)), &resp)
	it := lists.Item{Key: key, Value: rueidis.BinaryString(body)}
	it.AckList, it.Ack = r.s.source.Ack(job)
	return it
}
