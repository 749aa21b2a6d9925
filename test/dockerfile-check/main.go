// dockerfile-check: reads a Dockerfile the way `docker build` does, with BuildKit's own parser,
// instruction parser and linter (the checks `docker build --check` runs), and prints what it
// found as JSON for test/image.test.ts:
//
//	dockerfile-check <Dockerfile> [<.dockerignore>]
//
// Output: {"lint": {"warnings": [...], "error": "..."}, "ignored": [...], "stages": [...]}.
// Exit status 0 when the file could be read, parse errors included (the verdict is in the JSON),
// 1 with a one-line message on stderr otherwise.
//
// What differs from a real build, and why: base images are not pulled (no registry is reachable
// from the tests), so the image resolver answers every FROM with a config of this platform whose
// only variable is PATH; rules that look into the base image (its platform, its variables) see
// that. The CopyIgnoredFile rule needs the build context, which the linter reaches through a
// BuildKit gateway this program does not have, so the same question (does .dockerignore
// exclude a path a COPY names?) is answered here with the same matcher BuildKit uses.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"runtime"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
)

type warning struct {
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
	URL    string `json:"url,omitempty"`
	Line   int    `json:"line"`
}

type lintResult struct {
	Warnings []warning `json:"warnings"`
	Error    string    `json:"error,omitempty"`
}

type ignoredSource struct {
	Line   int    `json:"line"`
	Source string `json:"source"`
}

type command struct {
	Kind string `json:"kind"`
	Line int    `json:"line"`
	// COPY / ADD
	From    string   `json:"from,omitempty"`
	Sources []string `json:"sources,omitempty"`
	Dest    string   `json:"dest,omitempty"`
	Chmod   string   `json:"chmod,omitempty"`
	Chown   string   `json:"chown,omitempty"`
	// RUN / CMD / ENTRYPOINT: Args as written; for the shell form (Shell true) also Words, the
	// command line split as a shell would split it (variables left as they are).
	Shell bool     `json:"shell,omitempty"`
	Args  []string `json:"args,omitempty"`
	Words []string `json:"words,omitempty"`
	Flags []string `json:"flags,omitempty"`
	// ENV
	Env [][2]string `json:"env,omitempty"`
	// WORKDIR
	Path string `json:"path,omitempty"`
}

type stage struct {
	Name     string    `json:"name"`
	Base     string    `json:"base"`
	Platform string    `json:"platform,omitempty"`
	Line     int       `json:"line"`
	Commands []command `json:"commands"`
}

type output struct {
	Lint    lintResult      `json:"lint"`
	Ignored []ignoredSource `json:"ignored"`
	Stages  []stage         `json:"stages"`
}

// resolver answers FROM without a registry (see the top of the file).
type resolver struct{}

func (resolver) ResolveImageConfig(ctx context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + strings.Repeat("0", 64)}},
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	}
	dt, err := json.Marshal(cfg)
	return ref, "", dt, err
}

func firstLine(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

func lint(ctx context.Context, dt []byte) (lintResult, error) {
	src := llb.Local("dockerfile")
	def, err := src.Marshal(ctx)
	if err != nil {
		return lintResult{}, err
	}
	sm := llb.NewSourceMap(&src, "Dockerfile", "Dockerfile", dt)
	sm.Definition = def
	res, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{SourceMap: sm, MetaResolver: resolver{}})
	if err != nil {
		return lintResult{}, err
	}
	out := lintResult{Warnings: []warning{}}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 && w.Location.Ranges[0].Start != nil {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		out.Warnings = append(out.Warnings, warning{Rule: w.RuleName, Detail: w.Detail, URL: w.URL, Line: line})
	}
	if res.Error != nil {
		out.Error = res.Error.Message
	}
	return out, nil
}

func describe(dt []byte) ([]stage, error) {
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, err
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, err
	}
	lex := shell.NewLex(ast.EscapeToken)
	lex.SkipUnsetEnv = true
	noEnv := shell.EnvsFromSlice(nil)
	out := []stage{}
	for _, st := range stages {
		s := stage{Name: st.Name, Base: st.BaseName, Platform: st.Platform, Line: firstLine(st.Location), Commands: []command{}}
		for _, cmd := range st.Commands {
			c := command{Kind: strings.ToLower(cmd.Name()), Line: firstLine(cmd.Location())}
			switch x := cmd.(type) {
			case *instructions.CopyCommand:
				c.From, c.Sources, c.Dest, c.Chmod, c.Chown = x.From, x.SourcePaths, x.DestPath, x.Chmod, x.Chown
			case *instructions.AddCommand:
				c.Sources, c.Dest, c.Chmod, c.Chown = x.SourcePaths, x.DestPath, x.Chmod, x.Chown
			case *instructions.RunCommand:
				c.Shell, c.Args, c.Flags = x.PrependShell, x.CmdLine, x.FlagsUsed
				if x.PrependShell {
					if c.Words, err = lex.ProcessWords(strings.Join(x.CmdLine, " "), noEnv); err != nil {
						return nil, fmt.Errorf("line %d: %w", c.Line, err)
					}
				}
			case *instructions.CmdCommand:
				c.Shell, c.Args = x.PrependShell, x.CmdLine
			case *instructions.EntrypointCommand:
				c.Shell, c.Args = x.PrependShell, x.CmdLine
			case *instructions.EnvCommand:
				for _, kv := range x.Env {
					c.Env = append(c.Env, [2]string{kv.Key, kv.Value})
				}
			case *instructions.WorkdirCommand:
				c.Path = x.Path
			}
			s.Commands = append(s.Commands, c)
		}
		out = append(out, s)
	}
	return out, nil
}

// ignored lists the build-context sources of COPY and ADD that .dockerignore excludes.
func ignored(stages []stage, ignoreFile string) ([]ignoredSource, error) {
	out := []ignoredSource{}
	if ignoreFile == "" {
		return out, nil
	}
	f, err := os.Open(ignoreFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, err
	}
	for _, s := range stages {
		for _, c := range s.Commands {
			if (c.Kind != "copy" && c.Kind != "add") || c.From != "" {
				continue
			}
			for _, src := range c.Sources {
				p := strings.TrimPrefix(path.Clean("/"+src), "/")
				if ok, err := pm.MatchesOrParentMatches(p); err != nil {
					return nil, err
				} else if ok {
					out = append(out, ignoredSource{Line: c.Line, Source: src})
				}
			}
		}
	}
	return out, nil
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-check <Dockerfile> [<.dockerignore>]")
		os.Exit(1)
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "dockerfile-check: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
}

func run(args []string) error {
	dt, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var out output
	if out.Lint, err = lint(context.Background(), dt); err != nil {
		return err
	}
	// A file BuildKit cannot parse is a verdict too (the linter has reported it), not a failure to check.
	if out.Stages, err = describe(dt); err != nil {
		if out.Lint.Error == "" {
			out.Lint.Error = err.Error()
		}
		out.Stages = []stage{}
	}
	ignoreFile := ""
	if len(args) == 2 {
		ignoreFile = args[1]
	}
	if out.Ignored, err = ignored(out.Stages, ignoreFile); err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}
