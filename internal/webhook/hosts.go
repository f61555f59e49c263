package webhook

import (
	"net"
	"net/http"
	"strings"
)

// AllowHosts wraps next so that only requests whose Host header names one
// of hosts (case-insensitively, any port) are served; the others get 421
// Misdirected Request, so that a page on another site that resolves its
// own name to corral's address (DNS rebinding) cannot drive corral's API
// from a browser. No hosts: next itself, any Host is served.
func AllowHosts(hosts []string, next http.Handler) http.Handler {
	if len(hosts) == 0 {
		return next
	}
	allowed := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		allowed[canonicalHost(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed[canonicalHost(r.Host)] {
			http.Error(w, "misdirected request: this server does not answer for that host name", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// canonicalHost lowercases a Host header and drops its port, the brackets
// of an IPv6 address and a trailing dot.
func canonicalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(h, "]"), "["), ".")
	return strings.ToLower(h)
}
