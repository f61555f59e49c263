package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store"
)

// Diff lists what Apply(d) would change in the store's catalog, one line
// per difference, in the configuration's own words:
//
//   - pool gpu
//   - pool old
//     pool linux: max_instances 8 → 12
//
// Rows are compared the way Apply compares them (the store's encoding), so
// an empty Diff means Apply writes nothing. Secrets are never compared nor
// printed: the store does not hold them.
func Diff(ctx context.Context, st corral.Store, d Desired) ([]string, error) {
	var (
		tenants []corral.Tenant
		targets []corral.Target
		pools   []corral.Pool
	)
	err := st.View(ctx, func(tx corral.ReadTx) error {
		var err error
		if tenants, err = tx.Tenants(ctx); err != nil {
			return err
		}
		if targets, err = tx.Targets(ctx); err != nil {
			return err
		}
		pools, err = tx.Pools(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: diff: %w", err)
	}
	// Targets added through the API that the file does not list stay: no
	// change to show.
	listed := map[string]bool{}
	for _, t := range d.Targets {
		listed[t.ID] = true
	}
	targets = slices.DeleteFunc(targets, func(t corral.Target) bool { return t.FromAPI && !listed[t.ID] })
	// The same for tenants.
	listedTenants := map[string]bool{}
	for _, t := range d.Tenants {
		listedTenants[t.ID] = true
	}
	tenants = slices.DeleteFunc(tenants, func(t corral.Tenant) bool { return t.FromAPI && !listedTenants[t.ID] })
	var out []string
	out = append(out, diffRows("tenant", tenants, d.Tenants, func(t corral.Tenant) string { return t.ID },
		func(t corral.Tenant) (string, error) { b, err := json.Marshal(t); return string(b), err })...)
	out = append(out, diffRows("target", targets, d.Targets, func(t corral.Target) string { return t.ID }, encodeTarget)...)
	out = append(out, diffRows("pool", pools, d.Pools, func(p corral.Pool) string { return p.ID }, store.EncodePool)...)
	return out, nil
}

// encodeTarget is the store's encoding plus the tenant (a column of its
// own), so that a target moved to another tenant shows.
func encodeTarget(t corral.Target) (string, error) {
	s, err := store.EncodeTarget(t)
	if err != nil {
		return "", err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return "", err
	}
	m["TenantID"], _ = json.Marshal(t.TenantID)
	b, err := json.Marshal(m)
	return string(b), err
}

func diffRows[T any](kind string, have, want []T, id func(T) string, enc func(T) (string, error)) []string {
	old := map[string]T{}
	for _, h := range have {
		old[id(h)] = h
	}
	var out []string
	seen := map[string]bool{}
	for _, w := range want {
		k := id(w)
		seen[k] = true
		o, ok := old[k]
		if !ok {
			out = append(out, "+ "+kind+" "+k)
			continue
		}
		for _, f := range fieldDiff(o, w, enc) {
			out = append(out, kind+" "+k+": "+f)
		}
	}
	var gone []string
	for k := range old {
		if !seen[k] {
			gone = append(gone, "- "+kind+" "+k)
		}
	}
	sort.Strings(gone)
	return append(out, gone...)
}

// fieldDiff compares two rows field by field in their stored encoding and
// prints each differing field as "key old → new" with the config's
// snake_case key.
func fieldDiff[T any](a, b T, enc func(T) (string, error)) []string {
	x, err1 := enc(a)
	y, err2 := enc(b)
	if err1 != nil || err2 != nil {
		return []string{"(cannot compare: " + fmt.Sprint(err1, err2) + ")"}
	}
	if x == y {
		return nil
	}
	var mx, my map[string]json.RawMessage
	if json.Unmarshal([]byte(x), &mx) != nil || json.Unmarshal([]byte(y), &my) != nil {
		return []string{"changed"}
	}
	keys := map[string]bool{}
	for k := range mx {
		keys[k] = true
	}
	for k := range my {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		if string(mx[k]) != string(my[k]) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for _, k := range names {
		out = append(out, fmt.Sprintf("%s %s → %s", snake(k), show(va, k, mx[k]), show(vb, k, my[k])))
	}
	return out
}

// show prints field k of v for people (durations as 10m0s, lists as
// [a b]); a field the struct lacks falls back to its stored JSON.
func show(v reflect.Value, k string, raw json.RawMessage) string {
	if v.Kind() == reflect.Struct {
		if f := v.FieldByName(k); f.IsValid() && f.CanInterface() {
			if b, ok := f.Interface().(json.RawMessage); ok {
				return showRaw(b)
			}
			s := fmt.Sprintf("%+v", f.Interface())
			if s == "" {
				return `""`
			}
			return s
		}
	}
	return showRaw(raw)
}

func showRaw(b json.RawMessage) string {
	if len(b) == 0 {
		return "(none)"
	}
	return string(b)
}

// snake turns a Go field name into the config's key: MaxInstances →
// max_instances.
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
