package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// Provider is one named provider instance: a type from the provider
// registry and that type's settings, decoded strictly by the type's own
// struct.
//
//	providers:
//	  - {name: rack1, type: docker, endpoints: [...]}
//	  - {name: local, type: process}
//
// A pool that names a type ("process", "docker") without an instance of
// that name gets an implicit instance of the type with default settings;
// the older shape, a mapping of settings by type (providers: {docker:
// {...}}), declares instances named after their types and earns a
// deprecation warning.
type Provider struct {
	Name string
	Type string
	// Concurrency caps the calls under way at once to this instance over
	// all its pools (key concurrency, beside name and type); 0 = no cap.
	Concurrency int
	Settings    provider.Settings // nil when the type is unknown
	// Implicit: not declared, made for the pools that name a type.
	Implicit bool

	key  string     // key path of its settings, e.g. providers[0]
	node *yaml.Node // its settings, without name and type
}

var (
	providersType = reflect.TypeFor[[]Provider]()
	nodeType      = reflect.TypeFor[*yaml.Node]()
)

// providerList decodes the providers key: a list of instances or the
// older mapping by type. Settings are decoded later (decodeProviders),
// once every key is read.
func (d *decoder) providerList(n *yaml.Node, key string) []Provider {
	var out []Provider
	switch n.Kind {
	case yaml.SequenceNode:
		for i, item := range n.Content {
			k := fmt.Sprintf("%s[%d]", key, i)
			d.src.lines[k] = item.Line
			if item.Kind != yaml.MappingNode {
				d.problem(item.Line, k, "want a mapping like {name: local, type: process}")
				continue
			}
			p := Provider{key: k, node: &yaml.Node{Kind: yaml.MappingNode, Tag: item.Tag, Line: item.Line, Column: item.Column}}
			for j := 0; j+1 < len(item.Content); j += 2 {
				kn, vn := item.Content[j], item.Content[j+1]
				switch kn.Value {
				case "concurrency":
					d.src.lines[k+".concurrency"] = kn.Line
					d.value(vn, reflect.ValueOf(&p.Concurrency).Elem(), k+".concurrency")
				case "name", "type":
					d.src.lines[k+"."+kn.Value] = kn.Line
					var s string
					d.value(vn, reflect.ValueOf(&s).Elem(), k+"."+kn.Value)
					if kn.Value == "name" {
						p.Name = s
					} else {
						p.Type = s
					}
				default:
					p.node.Content = append(p.node.Content, kn, vn)
				}
			}
			out = append(out, p)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			k := key + "." + kn.Value
			d.src.lines[k] = kn.Line
			out = append(out, Provider{Name: kn.Value, Type: kn.Value, key: k, node: vn})
			p := d.src.at(k, fmt.Sprintf("providers as a mapping by type is deprecated; write a list: providers: [{name: %s, type: %s, ...}]", kn.Value, kn.Value))
			*d.warn = append(*d.warn, p.String())
		}
	default:
		d.problem(n.Line, key, "want a list like [{name: local, type: process}]")
	}
	return out
}

// decodeProviders decodes every declared instance's settings with its
// type's struct, adds the implicit instances pools need, and decodes each
// pool's options with its provider type's struct.
func (c *Config) decodeProviders(d *decoder) {
	named := map[string]int{}
	for i := range c.Providers {
		p := &c.Providers[i]
		if _, dup := named[p.Name]; !dup && p.Name != "" {
			named[p.Name] = i
		}
		t, ok := provider.Lookup(p.Type)
		if !ok {
			continue // reported by the builder
		}
		p.Settings = t.NewSettings()
		if p.node != nil {
			d.value(p.node, reflect.ValueOf(p.Settings).Elem(), p.key)
		}
	}
	for i := range c.Pools {
		pl := &c.Pools[i]
		if _, ok := named[pl.Provider]; ok || pl.Provider == "" {
			continue
		}
		if t, ok := provider.Lookup(pl.Provider); ok {
			named[pl.Provider] = len(c.Providers)
			c.Providers = append(c.Providers, Provider{Name: t.Name, Type: t.Name, Settings: t.NewSettings(),
				Implicit: true, key: fmt.Sprintf("pools[%d].provider", i)})
		}
	}
	for i := range c.Pools {
		pl := &c.Pools[i]
		k := fmt.Sprintf("pools[%d]", i)
		j, ok := named[pl.Provider]
		if !ok {
			continue // reported by the builder
		}
		t, ok := provider.Lookup(c.Providers[j].Type)
		if !ok {
			continue
		}
		if t.NewPoolOptions == nil {
			if pl.Options != nil && len(pl.Options.Content) > 0 {
				d.src.problems = append(d.src.problems, d.src.at(k+".options", fmt.Sprintf("provider type %s takes no pool options", t.Name)))
			}
			if pl.DockerInDocker {
				d.src.problems = append(d.src.problems, d.src.at(k+".docker_in_docker", "only the docker provider type takes it"))
			}
			continue
		}
		o := t.NewPoolOptions()
		if pl.Options != nil {
			d.value(pl.Options, reflect.ValueOf(o).Elem(), k+".options")
		}
		if pl.DockerInDocker {
			// The pool key of old: now options: {docker_in_docker: true}.
			if f, ok := fieldByTag(reflect.ValueOf(o).Elem(), "docker_in_docker"); ok && f.Kind() == reflect.Bool {
				f.SetBool(true)
				*d.warn = append(*d.warn, d.src.at(k+".docker_in_docker", "deprecated; write options: {docker_in_docker: true}").String())
			} else {
				d.src.problems = append(d.src.problems, d.src.at(k+".docker_in_docker", "only the docker provider type takes it"))
			}
		}
		pl.ProviderOptions = o
	}
}

// buildProviders checks the provider instances and the pools' choice of
// them, and returns their definitions.
func (b *builder) buildProviders() []corral.ProviderDef {
	var out []corral.ProviderDef
	byName := map[string]*Provider{}
	for i := range b.c.Providers {
		p := &b.c.Providers[i]
		switch {
		case p.Name == "":
			b.bad(p.key+".name", "required, e.g. name: local")
		case !nameRE.MatchString(p.Name):
			b.bad(p.key+".name", "want letters, digits, '.', '_' and '-' (at most 63)")
		case byName[p.Name] != nil:
			b.bad(p.key+".name", "duplicate provider name %q", p.Name)
		}
		if _, ok := provider.Lookup(p.Type); !ok {
			what := "unknown provider type " + fmt.Sprintf("%q", p.Type)
			if p.Type == "" {
				what = "required"
			}
			b.bad(p.key+".type", "%s: want one of %v", what, provider.Types())
		}
		if byName[p.Name] == nil {
			byName[p.Name] = p
		}
		if p.Settings == nil {
			continue
		}
		b.fieldProblems(p.key, p.Settings.Validate())
		settings, err := json.Marshal(p.Settings)
		if err != nil {
			b.bad(p.key, "settings: %v", err)
			continue
		}
		if p.Concurrency < 0 {
			b.bad(p.key+".concurrency", "must not be negative (0 = no cap beyond each pool's)")
		}
		out = append(out, corral.ProviderDef{Name: p.Name, Type: p.Type, Settings: settings, Concurrency: p.Concurrency})
	}
	for i, pl := range b.c.Pools {
		k := fmt.Sprintf("pools[%d]", i)
		p := byName[pl.Provider]
		if pl.Provider != "" && p == nil {
			// An empty provider is reported with the pool's other problems.
			b.bad(k+".provider", "unknown provider %q: declare it under providers (name and type; types: %v)",
				pl.Provider, provider.Types())
		}
		if p == nil || p.Settings == nil || pl.ProviderOptions == nil {
			continue
		}
		prefix := k + ".options"
		if pl.Options == nil {
			prefix = k // the deprecated pool-level key
		}
		b.fieldProblems(prefix, pl.ProviderOptions.Validate(p.Settings))
	}
	return out
}

// fieldProblems records a Validate's problems at their keys below key.
func (b *builder) fieldProblems(key string, err error) {
	if err == nil {
		return
	}
	var fes provider.FieldErrors
	if !errors.As(err, &fes) {
		b.bad(key, "%v", err)
		return
	}
	for _, fe := range fes {
		k := key
		if fe.Field != "" {
			k += "." + fe.Field
		}
		b.bad(k, "%s", fe.Msg)
	}
}

// poolOptions encodes a pool's provider options for the domain; nil when
// they are all zero.
func poolOptions(o provider.PoolOptions) json.RawMessage {
	if o == nil {
		return nil
	}
	b, err := json.Marshal(o)
	if err != nil || string(b) == "{}" || strings.TrimSpace(string(b)) == "null" {
		return nil
	}
	return b
}
