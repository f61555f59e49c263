package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"
)

// The CLI over the API: corral jobs|pools|instances|usage talk to a
// running corral with a bearer token, never to the store.

const clientUsage = `Usage:
  corral jobs [-state S] [-target T] [-watch [-interval D]]   list jobs (newest last)
  corral jobs retry ID                                       route an unroutable job again
  corral pools                                               list pools with their state
  corral pools drain|pause|resume NAME                       change a pool's state
  corral tenants                                             list tenants: their cap and what they own (a tenant token: its own)
  corral targets                                             list targets (paused, credentials set: never shown)
  corral targets pause|resume NAME                           pause a target (its jobs wait) or resume it
  corral tokens                                              list API tokens (admin)
  corral tokens revoke ID                                    revoke an API token
  corral instances [-state S]                                list live instances
  corral instances stop ID [-force]                          stop an instance (-force: even a busy one)
  corral usage [-from T] [-to T] [-group-by G] [-format json|csv]
                                                             runner minutes and jobs (G: tenant, pool, target, repository, day)
  corral rightsizing                                         peak CPU and memory per repository and job, and the size that would do
  corral analytics [-from T] [-to T] [-repository R] [-workflow W] [-job J]
                                                             CI analytics per repository, workflow and job: runs, success rate,
                                                             p50/p95 duration and queue time (seconds), failures

Every command takes:
  -server URL   corral's API address (env CORRAL_SERVER; default http://127.0.0.1:8080)
  -token T      an API token (env CORRAL_TOKEN)
  -o table|json a table for people (default) or the API's JSON for scripts
Flags win over the environment, which wins over the client config file
~/.config/corral/client.yaml (env CORRAL_CLIENT_CONFIG names another):
  server: http://corral.internal:8081
  token: corral_...        (the file must not be readable by others)
`

// clientConfig is the client config file.
type clientConfig struct {
	Server string `yaml:"server"`
	Token  string `yaml:"token"`
}

// client calls corral's API.
type client struct {
	server, token string
	http          *http.Client
}

func clientConfigPath() string {
	if p := os.Getenv("CORRAL_CLIENT_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "corral", "client.yaml")
}

// readClientConfig reads the client config file; a missing file is no
// error. A file that holds a token must be private to its owner.
func readClientConfig(path string) (clientConfig, error) {
	var c clientConfig
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("client config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && err != io.EOF {
		return c, fmt.Errorf("client config %s: %w", path, err)
	}
	if c.Token != "" {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return c, fmt.Errorf("client config %s holds a token but is readable by others (mode %04o): chmod 600 %s", path, fi.Mode().Perm(), path)
		}
	}
	return c, nil
}

// clientFlags adds the common flags to fs; resolve fills the client once
// fs is parsed.
func clientFlags(fs *flag.FlagSet) (resolve func() (*client, error), output *string) {
	server := fs.String("server", "", "corral's API address (env CORRAL_SERVER)")
	token := fs.String("token", "", "API token (env CORRAL_TOKEN)")
	output = fs.String("o", "table", "table or json")
	return func() (*client, error) {
		path := clientConfigPath()
		file, err := readClientConfig(path)
		if err != nil {
			return nil, err
		}
		pick := func(vals ...string) string {
			for _, v := range vals {
				if v != "" {
					return v
				}
			}
			return ""
		}
		c := &client{server: pick(*server, os.Getenv("CORRAL_SERVER"), file.Server, "http://127.0.0.1:8080"),
			token: pick(*token, os.Getenv("CORRAL_TOKEN"), file.Token), http: &http.Client{Timeout: 30 * time.Second}}
		if !strings.Contains(c.server, "://") {
			c.server = "http://" + c.server
		}
		c.server = strings.TrimSuffix(c.server, "/")
		if _, err := url.Parse(c.server); err != nil {
			return nil, fmt.Errorf("server %q: %w", c.server, err)
		}
		if c.token == "" {
			return nil, fmt.Errorf("no API token: give -token, set CORRAL_TOKEN, or put token: in %s (create one with corral token create)", path)
		}
		if *output != "table" && *output != "json" {
			return nil, fmt.Errorf("-o %q: want table or json", *output)
		}
		return c, nil
	}, output
}

// do sends method path and returns the answer's body; a status other than
// 200 is an error carrying the API's message.
func (c *client) do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return b, nil
}

// parseArgs parses flags that may come before or after the positional
// arguments, and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var rest []string
	for fs.NArg() > 0 {
		rest = append(rest, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
	}
	return rest, nil
}

// runClient runs corral jobs|pools|instances|usage|rightsizing|analytics.
func runClient(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, clientUsage) }
	resolve, output := clientFlags(fs)
	var state, target, from, to, groupBy, format, repo, workflow, job *string
	var watch, force *bool
	var interval *time.Duration
	switch cmd {
	case "jobs":
		state = fs.String("state", "", "only jobs in this state")
		target = fs.String("target", "", "only jobs of this target")
		watch = fs.Bool("watch", false, "print the table again whenever it changes (until interrupted)")
		interval = fs.Duration("interval", 2*time.Second, "how often -watch asks")
	case "instances":
		state = fs.String("state", "", "only instances in this state")
		force = fs.Bool("force", false, "stop: even a busy runner (its job fails)")
	case "usage":
		from = fs.String("from", "", "start (RFC 3339 or 2006-01-02; default 30 days before -to)")
		to = fs.String("to", "", "end, exclusive (default now)")
		groupBy = fs.String("group-by", "tenant", "tenant, pool, target, repository or day")
		format = fs.String("format", "", "csv: the API's CSV as is (overrides -o)")
	case "analytics":
		from = fs.String("from", "", "start (RFC 3339 or 2006-01-02; default 30 days before -to)")
		to = fs.String("to", "", "end, exclusive (default now)")
		repo = fs.String("repository", "", "only this repository (owner/name)")
		workflow = fs.String("workflow", "", "only this workflow")
		job = fs.String("job", "", "only this job name")
	}
	rest, err := parseArgs(fs, args)
	if err != nil {
		return exitError(2)
	}
	c, err := resolve()
	if err != nil {
		return err
	}
	bad := func() error {
		fmt.Fprintf(stderr, "corral %s: unexpected arguments %q\n\n%s", cmd, rest, clientUsage)
		return exitError(2)
	}
	switch {
	case cmd == "jobs" && len(rest) == 0:
		q := url.Values{}
		if *state != "" {
			q.Set("state", *state)
		}
		if *target != "" {
			q.Set("target", *target)
		}
		path := "/api/v1/jobs?" + q.Encode()
		if *watch {
			return watchJobs(ctx, c, path, *output, *interval, stdout)
		}
		b, err := c.do(ctx, "GET", path)
		if err != nil {
			return err
		}
		return printJobs(stdout, b, *output)
	case cmd == "jobs" && len(rest) == 2 && rest[0] == "retry":
		b, err := c.do(ctx, "POST", "/api/v1/jobs/"+url.PathEscape(rest[1])+"/retry")
		if err != nil {
			return err
		}
		return printResult(stdout, b, *output, "job {id}: {state} {reason}")
	case cmd == "pools" && len(rest) == 0:
		b, err := c.do(ctx, "GET", "/api/v1/pools")
		if err != nil {
			return err
		}
		return printList(stdout, b, *output, "pools", []string{"POOL", "TENANT", "STATE", "INSTANCES", "MAX", "MIN IDLE", "CPU", "MEMORY MB", "PROVIDER"},
			[]string{"id", "tenant", "state", "live", "max_instances", "min_idle", "cpu", "memory_mb", "provider"})
	case cmd == "pools" && len(rest) == 2 && (rest[0] == "drain" || rest[0] == "pause" || rest[0] == "resume"):
		b, err := c.do(ctx, "POST", "/api/v1/pools/"+url.PathEscape(rest[1])+"/"+rest[0])
		if err != nil {
			return err
		}
		return printResult(stdout, b, *output, "pool {pool}: {state}")
	case cmd == "tenants" && len(rest) == 0:
		b, err := c.do(ctx, "GET", "/api/v1/tenants")
		if err != nil {
			return err
		}
		return printList(stdout, b, *output, "tenants", []string{"TENANT", "MAX", "TARGETS", "POOLS", "INSTANCES", "FROM API"},
			[]string{"id", "max_instances", "targets", "pools", "instances", "from_api"})
	case cmd == "targets" && len(rest) == 0:
		b, err := c.do(ctx, "GET", "/api/v1/targets")
		if err != nil {
			return err
		}
		return printList(stdout, b, *output, "targets", []string{"TARGET", "TENANT", "KIND", "SCOPE", "PATH", "MODE", "PAUSED", "TOKEN SET"},
			[]string{"id", "tenant", "kind", "scope", "path", "mode", "paused", "token_set"})
	case cmd == "targets" && len(rest) == 2 && (rest[0] == "pause" || rest[0] == "resume"):
		b, err := c.do(ctx, "POST", "/api/v1/targets/"+url.PathEscape(rest[1])+"/"+rest[0])
		if err != nil {
			return err
		}
		return printResult(stdout, b, *output, "target {target}: paused {paused}")
	case cmd == "tokens" && len(rest) == 0:
		b, err := c.do(ctx, "GET", "/api/v1/tokens")
		if err != nil {
			return err
		}
		return printList(stdout, b, *output, "tokens", []string{"ID", "NAME", "SCOPE", "TENANT"},
			[]string{"id", "name", "scope", "tenant"})
	case cmd == "tokens" && len(rest) == 2 && rest[0] == "revoke":
		b, err := c.do(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(rest[1]))
		if err != nil {
			return err
		}
		return printResult(stdout, b, *output, "token {id}: revoked")
	case cmd == "instances" && len(rest) == 0:
		path := "/api/v1/instances"
		if *state != "" {
			path += "?state=" + url.QueryEscape(*state)
		}
		b, err := c.do(ctx, "GET", path)
		if err != nil {
			return err
		}
		return printList(stdout, b, *output, "instances", []string{"ID", "NAME", "POOL", "TARGET", "STATE", "JOB", "CREATED"},
			[]string{"id", "name", "pool", "target", "state", "job_id", "created_at"})
	case cmd == "instances" && len(rest) == 2 && rest[0] == "stop":
		path := "/api/v1/instances/" + url.PathEscape(rest[1]) + "/stop"
		if *force {
			path += "?force=true"
		}
		b, err := c.do(ctx, "POST", path)
		if err != nil {
			return err
		}
		return printResult(stdout, b, *output, "instance {instance}: {was} -> {state}")
	case cmd == "rightsizing" && len(rest) == 0:
		b, err := c.do(ctx, "GET", "/api/v1/rightsizing")
		if err != nil {
			return err
		}
		return printList(stdout, b, *output, "jobs", []string{"REPOSITORY", "WORKFLOW", "JOB", "POOL", "JOBS", "PEAK CPU", "P95 CPU", "PEAK MEMORY MB", "CPU", "MEMORY MB", "ADVICE"},
			[]string{"repository", "workflow", "job", "pool", "jobs", "peak_cpu", "p95_cpu", "peak_memory_mb", "cpu", "memory_mb", "advice"})
	case cmd == "analytics" && len(rest) == 0:
		q := url.Values{}
		for k, v := range map[string]*string{"from": from, "to": to, "repository": repo, "workflow": workflow, "job": job} {
			if *v != "" {
				q.Set(k, *v)
			}
		}
		b, err := c.do(ctx, "GET", "/api/v1/analytics?"+q.Encode())
		if err != nil {
			return err
		}
		return printAnalytics(stdout, b, *output)
	case cmd == "usage" && len(rest) == 0:
		q := url.Values{"group_by": {*groupBy}}
		if *from != "" {
			q.Set("from", *from)
		}
		if *to != "" {
			q.Set("to", *to)
		}
		if *format == "csv" {
			q.Set("format", "csv")
		} else if *format != "" && *format != "json" {
			return fmt.Errorf("-format %q: want json or csv", *format)
		}
		b, err := c.do(ctx, "GET", "/api/v1/usage?"+q.Encode())
		if err != nil {
			return err
		}
		if *format == "csv" {
			_, err := stdout.Write(b)
			return err
		}
		return printUsage(stdout, b, *output, *groupBy)
	default:
		return bad()
	}
}

// cell formats one JSON value for a table.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil && strings.Contains(x, "T") {
			return t.Local().Format("2006-01-02 15:04:05")
		}
		if x == "" {
			return "-"
		}
		return x
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprint(int64(x))
		}
		return fmt.Sprintf("%.2f", x)
	case []any:
		var s []string
		for _, e := range x {
			s = append(s, cell(e))
		}
		return strings.Join(s, ",")
	default:
		return fmt.Sprint(x)
	}
}

// printList prints the list under key of a JSON answer as a table with
// the given columns (or the answer itself for -o json).
func printList(w io.Writer, body []byte, output, key string, head, fields []string) error {
	if output == "json" {
		_, err := w.Write(body)
		return err
	}
	var doc map[string][]map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, o := range doc[key] {
		var row []string
		for _, f := range fields {
			row = append(row, cell(o[f]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func printJobs(w io.Writer, body []byte, output string) error {
	return printList(w, body, output, "jobs", []string{"ID", "STATE", "TARGET", "REPO", "NAME", "POOL", "QUEUED", "REASON"},
		[]string{"id", "state", "target", "repo", "name", "pool", "queued_at", "reason"})
}

// printResult prints an operation's answer: a line from the template
// ({field} replaced by the answer's field) or the JSON.
func printResult(w io.Writer, body []byte, output, tmpl string) error {
	if output == "json" {
		_, err := w.Write(body)
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	line := tmpl
	for k, v := range doc {
		s := cell(v)
		if v == nil || s == "-" {
			s = ""
		}
		line = strings.ReplaceAll(line, "{"+k+"}", s)
	}
	for strings.Contains(line, "{") && strings.Contains(line, "}") { // fields the answer lacks
		i, j := strings.Index(line, "{"), strings.Index(line, "}")
		if j < i {
			break
		}
		line = line[:i] + line[j+1:]
	}
	_, err := fmt.Fprintln(w, strings.TrimSpace(line))
	return err
}

func printUsage(w io.Writer, body []byte, output, groupBy string) error {
	if output == "json" {
		_, err := w.Write(body)
		return err
	}
	var rep struct {
		Rows  []map[string]any `json:"rows"`
		Total map[string]any   `json:"total"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tCPU\tMEMORY MB\tJOBS\tRUNNER MINUTES\tCOST\n", strings.ToUpper(groupBy))
	for _, r := range append(rep.Rows, rep.Total) {
		cost := "-"
		if c, ok := r["cost"].(float64); ok {
			cost = fmt.Sprintf("%.4f", c)
		}
		cpu, mem := cell(r["cpu"]), cell(r["memory_mb"])
		if r["key"] == "total" {
			cpu, mem = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%s\n", cell(r["key"]), cpu, mem, cell(r["jobs"]), r["runner_minutes"], cost)
	}
	return tw.Flush()
}

// watchJobs prints the jobs table, then again each time it changes, until
// ctx ends (Ctrl-C).
func watchJobs(ctx context.Context, c *client, path, output string, every time.Duration, w io.Writer) error {
	var last []byte
	for {
		b, err := c.do(ctx, "GET", path)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(b, last) {
			if output == "table" {
				fmt.Fprintf(w, "-- %s\n", time.Now().Format(time.TimeOnly))
			}
			if err := printJobs(w, b, output); err != nil {
				return err
			}
			last = b
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

func printAnalytics(w io.Writer, body []byte, output string) error {
	if output == "json" {
		_, err := w.Write(body)
		return err
	}
	var rep struct {
		Runs int              `json:"runs"`
		Jobs []map[string]any `json:"jobs"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tWORKFLOW\tJOB\tRUNS\tSUCCESS %\tFAILURES\tP50 S\tP95 S\tQUEUE P50 S\tQUEUE P95 S\tLAST")
	for _, g := range rep.Jobs {
		rate, _ := g["success_rate"].(float64)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(g["repository"]), cell(g["workflow"]), cell(g["job"]),
			cell(g["count"]), rate*100, cell(g["failure"]), cell(g["duration_p50_seconds"]), cell(g["duration_p95_seconds"]),
			cell(g["queue_p50_seconds"]), cell(g["queue_p95_seconds"]), cell(g["last_conclusion"]))
	}
	return tw.Flush()
}
