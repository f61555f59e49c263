package github

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// etagCache keeps the last 200 answer of each GET URL with its ETag, so the
// next GET is conditional (If-None-Match) and a 304, which GitHub does not
// count against the rate limit, is answered from here. Bounded: when full,
// an arbitrary entry goes.
type etagCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*etagEntry
}

type etagEntry struct {
	etag   string
	header http.Header
	body   []byte
}

func newETagCache(max int) *etagCache {
	return &etagCache{max: max, m: map[string]*etagEntry{}}
}

func (c *etagCache) get(url string) *etagEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[url]
}

func (c *etagCache) put(url, etag string, h http.Header, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[url]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[url] = &etagEntry{etag: etag, header: h.Clone(), body: bytes.Clone(body)}
}

// len is for tests.
func (c *etagCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// response turns a 304 into the cached 200, with the fresh rate-limit and
// request-id headers of the 304.
func (e *etagEntry) response(req *http.Request, notModified *http.Response) *http.Response {
	h := e.header.Clone()
	for _, k := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Used", "X-GitHub-Request-Id", "Date"} {
		if v := notModified.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	h.Set("X-Corral-Cache", "etag")
	h.Set("Content-Length", strconv.Itoa(len(e.body)))
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         notModified.Proto,
		ProtoMajor:    notModified.ProtoMajor,
		ProtoMinor:    notModified.ProtoMinor,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(e.body)),
		ContentLength: int64(len(e.body)),
		Request:       req,
	}
}
