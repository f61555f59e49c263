package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

const completionUsage = `usage: corral completion bash|zsh|fish

Prints a completion script for corral's commands, their words and flags.
  bash: source <(corral completion bash)    (or save it in /etc/bash_completion.d/corral)
  zsh:  source <(corral completion zsh)     (or save it as _corral in a directory of $fpath)
  fish: corral completion fish > ~/.config/fish/completions/corral.fish
`

// compEntry is what the scripts complete for one command name.
type compEntry struct {
	name  string
	subs  []string            // the words right after the name
	next  map[string][]string // a second word after a first one (github app create)
	flags []string            // the command's flags ("-config"), when it has one flag set
	// subFlags: the flags by first sub word (token create|list|revoke).
	subFlags map[string][]string
}

var flagSetMu sync.Mutex

// flagsOf runs corral with args and -h, seeing the flag sets the command
// makes (nothing runs past flag parsing), and returns their flags.
func flagsOf(args []string) []string {
	flagSetMu.Lock()
	defer flagSetMu.Unlock()
	var sets []*flag.FlagSet
	flagSetHook = func(fs *flag.FlagSet) { sets = append(sets, fs) }
	defer func() { flagSetHook = nil }()
	_ = run(context.Background(), append(append([]string{}, args...), "-h"), io.Discard, io.Discard)
	seen := map[string]bool{}
	var out []string
	for _, fs := range sets {
		fs.VisitAll(func(f *flag.Flag) {
			if !seen[f.Name] {
				seen[f.Name] = true
				out = append(out, "-"+f.Name)
			}
		})
	}
	sort.Strings(out)
	return out
}

// completionModel reads the command table.
func completionModel() []compEntry {
	var es []compEntry
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		for _, n := range c.names {
			if strings.HasPrefix(n, "-") {
				continue
			}
			e := compEntry{name: n, next: map[string][]string{}, subFlags: map[string][]string{}}
			for _, s := range c.subs {
				w := strings.Fields(s)
				if !contains(e.subs, w[0]) {
					e.subs = append(e.subs, w[0])
				}
				if len(w) > 1 {
					e.next[w[0]] = append(e.next[w[0]], w[1])
				}
				if c.subFlags {
					e.subFlags[w[0]] = flagsOf(append([]string{n}, w...))
				}
			}
			if !c.subFlags {
				e.flags = flagsOf([]string{n})
			}
			es = append(es, e)
		}
	}
	return es
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func runCompletion(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		fmt.Fprint(stderr, completionUsage)
		return exitError(2)
	}
	var gen func(io.Writer, []compEntry)
	switch args[0] {
	case "bash":
		gen = bashCompletion
	case "zsh":
		gen = zshCompletion
	case "fish":
		gen = fishCompletion
	case "-h", "--help", "help":
		fmt.Fprint(stdout, completionUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "corral completion: unknown shell %q\n\n%s", args[0], completionUsage)
		return exitError(2)
	}
	gen(stdout, completionModel())
	return nil
}

func names(es []compEntry) string {
	var ns []string
	for _, e := range es {
		ns = append(ns, e.name)
	}
	return strings.Join(ns, " ")
}

// shellCase writes the case arms shared by bash and zsh: for the command
// in $cmd, the first word $w1 and the word count $n (words after corral),
// set $words_ to the candidates.
func shellCase(w io.Writer, es []compEntry, indent string) {
	fmt.Fprintf(w, "%scase \"$cmd\" in\n", indent)
	for _, e := range es {
		fmt.Fprintf(w, "%s  %s)\n", indent, e.name)
		if len(e.subs) > 0 {
			fmt.Fprintf(w, "%s    if [ \"$n\" -eq 2 ]; then cand=\"%s\"; fi\n", indent, strings.Join(e.subs, " "))
		}
		for first, second := range sortedMap(e.next) {
			fmt.Fprintf(w, "%s    if [ \"$n\" -eq 3 ] && [ \"$w1\" = %s ]; then cand=\"%s\"; fi\n", indent, first, strings.Join(second, " "))
		}
		if len(e.flags) > 0 {
			fmt.Fprintf(w, "%s    flags=\"%s\"\n", indent, strings.Join(e.flags, " "))
		}
		for first, fl := range sortedMap(e.subFlags) {
			fmt.Fprintf(w, "%s    if [ \"$w1\" = %s ]; then flags=\"%s\"; fi\n", indent, first, strings.Join(fl, " "))
		}
		fmt.Fprintf(w, "%s    ;;\n", indent)
	}
	fmt.Fprintf(w, "%sesac\n", indent)
}

// sortedMap iterates a map in key order (stable scripts).
func sortedMap(m map[string][]string) func(func(string, []string) bool) {
	return func(yield func(string, []string) bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}

func bashCompletion(w io.Writer, es []compEntry) {
	fmt.Fprintf(w, `# bash completion for corral (corral completion bash); generated from corral's command table.
_corral() {
  local cur cmd w1 n cand flags
  cur="${COMP_WORDS[COMP_CWORD]}"
  n=$COMP_CWORD
  cmd="${COMP_WORDS[1]}"
  w1="${COMP_WORDS[2]}"
  cand=""
  flags=""
  if [ "$n" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "%s" -- "$cur") )
    return 0
  fi
`, names(es))
	shellCase(w, es, "  ")
	fmt.Fprint(w, `  case "$cur" in
    -*) COMPREPLY=( $(compgen -W "$flags" -- "$cur") ) ;;
    *)
      if [ -n "$cand" ]; then
        COMPREPLY=( $(compgen -W "$cand" -- "$cur") )
      else
        COMPREPLY=( $(compgen -f -- "$cur") )
      fi
      ;;
  esac
  return 0
}
complete -F _corral corral
`)
}

func zshCompletion(w io.Writer, es []compEntry) {
	fmt.Fprintf(w, `#compdef corral
# zsh completion for corral (corral completion zsh); generated from corral's command table.
_corral() {
  local cmd w1 n cand flags
  n=$((CURRENT - 1))
  cmd="${words[2]}"
  w1="${words[3]}"
  cand=""
  flags=""
  if [ "$n" -eq 1 ]; then
    compadd -- %s
    return
  fi
`, names(es))
	shellCase(w, es, "  ")
	fmt.Fprint(w, `  if [[ "${words[CURRENT]}" == -* ]]; then
    compadd -- ${=flags}
  elif [ -n "$cand" ]; then
    compadd -- ${=cand}
  else
    _files
  fi
}
if [ "$funcstack[1]" = "_corral" ]; then
  _corral "$@"
else
  compdef _corral corral
fi
`)
}

func fishCompletion(w io.Writer, es []compEntry) {
	fmt.Fprintf(w, "# fish completion for corral (corral completion fish); generated from corral's command table.\n")
	fmt.Fprintf(w, "complete -c corral -f\n")
	fmt.Fprintf(w, "complete -c corral -n __fish_use_subcommand -a %q\n", names(es))
	for _, e := range es {
		cond := "__fish_seen_subcommand_from " + e.name
		if len(e.subs) > 0 {
			fmt.Fprintf(w, "complete -c corral -n '%s; and not __fish_seen_subcommand_from %s' -a %q\n", cond, strings.Join(e.subs, " "), strings.Join(e.subs, " "))
		}
		for first, second := range sortedMap(e.next) {
			fmt.Fprintf(w, "complete -c corral -n '%s; and __fish_seen_subcommand_from %s' -a %q\n", cond, first, strings.Join(second, " "))
		}
		for _, f := range e.flags {
			fmt.Fprintf(w, "complete -c corral -n '%s' -o %s\n", cond, strings.TrimPrefix(f, "-"))
		}
		for first, fl := range sortedMap(e.subFlags) {
			for _, f := range fl {
				fmt.Fprintf(w, "complete -c corral -n '%s; and __fish_seen_subcommand_from %s' -o %s\n", cond, first, strings.TrimPrefix(f, "-"))
			}
		}
	}
}
