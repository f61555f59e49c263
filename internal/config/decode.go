package config

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/corral-ci/corral/internal/corral"
)

// sources remembers where every key came from (a line of the file or an
// environment variable) and the problems found while decoding.
type sources struct {
	file     string
	lines    map[string]int    // key path -> line
	env      map[string]string // key path -> environment variable
	problems []Problem
	failed   map[string]bool // keys that could not be decoded
}

func newSources(file string) *sources {
	return &sources{file: file, lines: map[string]int{}, env: map[string]string{}, failed: map[string]bool{}}
}

func (s *sources) has(key string) bool { _, ok := s.lines[key]; return ok || s.env[key] != "" }

func (s *sources) fromEnv(key, env string) { s.env[key] = env }

// at returns the problem for key: its line, or the environment variable
// that set it, or the line of the nearest enclosing key.
func (s *sources) at(key, msg string) Problem {
	if env := s.env[key]; env != "" {
		return Problem{File: "environment " + env, Key: key, Msg: msg}
	}
	for k := key; k != ""; k = parentKey(k) {
		if line, ok := s.lines[k]; ok {
			return Problem{File: s.file, Line: line, Key: key, Msg: msg}
		}
	}
	return Problem{File: s.file, Key: key, Msg: msg}
}

// parentKey strips the last ".name" or "[i]" from a key path.
func parentKey(k string) string {
	i := strings.LastIndexAny(k, ".[")
	if i < 0 {
		return ""
	}
	return k[:i]
}

// decoder walks the YAML node tree into Go values by their yaml tags,
// recording lines and problems instead of stopping at the first.
type decoder struct {
	file   string
	src    *sources
	getenv func(string) string
	warn   *[]string
}

func (d *decoder) problem(line int, key, format string, args ...any) {
	d.src.failed[key] = true
	d.src.problems = append(d.src.problems, Problem{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) decodeFile(data []byte, c *Config) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml.v3 says "yaml: line N: ..." and does not quote values.
		msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
		if _, serr := fmt.Sscanf(msg, "line %d:", &line); serr == nil {
			_, msg, _ = strings.Cut(msg, ": ")
		}
		d.problem(line, "", "%s", msg)
		return
	}
	if len(doc.Content) == 0 {
		return // an empty file: every default
	}
	d.value(doc.Content[0], reflect.ValueOf(c).Elem(), "")
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[corral.Secret]()
)

// value decodes n into v; key is v's path ("pools[0].labels").
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with nothing: the zero value
	}
	switch {
	case v.Type() == providersType:
		v.Set(reflect.ValueOf(d.providerList(n, key)))
		return
	case v.Type() == nodeType:
		v.Set(reflect.ValueOf(n)) // decoded once its type is known
		return
	case v.Type() == secretType:
		if n.Kind != yaml.ScalarNode {
			d.problem(n.Line, key, "want a string") // never echo a secret
			return
		}
		v.SetString(string(d.secret(n.Value, key, true)))
		return
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode {
			d.problem(n.Line, key, "want a duration like 30s, 5m or 6h")
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.problem(n.Line, key, "want a duration like 30s, 5m or 6h, got %q", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.problem(n.Line, key, "want a string")
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			d.problem(n.Line, key, "want a whole number")
			return
		}
		if i, ok := d.atoi(n.Value, key); ok {
			v.SetInt(int64(i))
		}
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
		if n.Kind != yaml.ScalarNode || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.problem(n.Line, key, "want a number like 0.008, got %q", n.Value)
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			d.problem(n.Line, key, "want true or false, got %q", n.Value)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.problem(n.Line, key, "want a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			k := fmt.Sprintf("%s[%d]", key, i)
			d.src.lines[k] = item.Line
			d.value(item, s.Index(i), k)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.problem(n.Line, key, "want a mapping")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			k := key + "." + kn.Value
			if m.MapIndex(reflect.ValueOf(kn.Value)).IsValid() {
				d.problem(kn.Line, k, "duplicate key")
				continue
			}
			d.src.lines[k] = kn.Line
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(vn, e, k)
			m.SetMapIndex(reflect.ValueOf(kn.Value), e)
		}
		v.Set(m)
	case reflect.Struct:
		d.object(n, v, key)
	case reflect.Interface:
		// Free-form values (a garm pool's extra_specs): whatever YAML
		// holds, for the type's Validate to judge.
		if v.NumMethod() != 0 {
			panic("config: cannot decode into " + v.Type().String())
		}
		var x any
		if err := n.Decode(&x); err != nil {
			d.problem(n.Line, key, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		panic("config: cannot decode into " + v.Type().String())
	}
}

// object decodes a mapping into a struct by yaml tags; unknown and
// repeated keys are problems.
func (d *decoder) object(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.problem(n.Line, key, "want a mapping of keys")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		k := kn.Value
		if key != "" {
			k = key + "." + kn.Value
		}
		f, ok := fieldByTag(v, kn.Value)
		switch {
		case !ok:
			d.problem(kn.Line, k, "unknown key")
			continue
		case seen[kn.Value]:
			d.problem(kn.Line, k, "duplicate key")
			continue
		}
		seen[kn.Value] = true
		d.src.lines[k] = kn.Line
		d.value(vn, f, k)
	}
}

// fieldByTag finds the exported field whose yaml tag is name. An empty
// key (YAML allows one) matches nothing: untagged and unexported fields
// are never set from the file (found by FuzzParse: an empty key reached
// the unexported file field and panicked).
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	if name == "" {
		return reflect.Value{}, false
	}
	t := v.Type()
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == name && tag != "-" {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func (d *decoder) atoi(s, key string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		d.src.failed[key] = true
		d.src.problems = append(d.src.problems, d.src.at(key, fmt.Sprintf("want a whole number, got %q", s)))
		return 0, false
	}
	return n, true
}

// sealedMark starts the placeholder of a "sealed:NAME" secret until
// resolveSealed opens it.
const sealedMark = "\x00sealed:"

// secret resolves "env:NAME", "file:PATH" (relative to the config file's
// directory) and, later, "sealed:NAME" (a secret sealed in the data
// directory, e.g. by `corral github app create`); anything else is the secret itself, which earns a
// warning when literalWarn is set. Problems never contain the value.
// MaxSecretFile caps a file: secret: a token or key is a few KiB, and
// file:/dev/zero must not eat corral's memory.
const MaxSecretFile = 64 << 10

func (d *decoder) secret(s, key string, literalWarn bool) corral.Secret {
	switch {
	case strings.HasPrefix(s, "env:"):
		name := strings.TrimPrefix(s, "env:")
		v := d.getenv(name)
		if v == "" {
			d.src.problems = append(d.src.problems, d.src.at(key, fmt.Sprintf("environment variable %s is not set or empty", name)))
		}
		return corral.Secret(v)
	case strings.HasPrefix(s, "sealed:"):
		// Opened once the data directory is known (resolveSealed).
		return corral.Secret(sealedMark + strings.TrimPrefix(s, "sealed:"))
	case strings.HasPrefix(s, "file:"):
		path := strings.TrimPrefix(s, "file:")
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(d.file), path)
		}
		b, err := readCapped(path, MaxSecretFile)
		v := strings.TrimSpace(string(b))
		switch {
		case errors.Is(err, errTooLarge):
			d.src.problems = append(d.src.problems, d.src.at(key, fmt.Sprintf("secret file %s is larger than %d KiB", path, MaxSecretFile>>10)))
			return ""
		case err != nil:
			d.src.problems = append(d.src.problems, d.src.at(key, fmt.Sprintf("cannot read secret file %s", path)))
		case v == "":
			d.src.problems = append(d.src.problems, d.src.at(key, fmt.Sprintf("secret file %s is empty", path)))
		}
		return corral.Secret(v)
	}
	if literalWarn && s != "" && (key != "store" || dsnHasPassword(s)) {
		p := d.src.at(key, "a literal secret in the config file; prefer env:NAME or file:PATH")
		*d.warn = append(*d.warn, p.String())
	}
	return corral.Secret(s)
}
