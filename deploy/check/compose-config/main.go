// compose-config loads docker-compose.yml the way `docker compose config` does, with
// compose-go, the library the Docker Compose CLI itself is built on: interpolation, YAML
// merges, the Compose-spec schema, normalisation and the consistency checks (a depends_on,
// volume or network that names nothing). This machine's docker CLI has no compose plugin and
// there is no Docker engine, so scripts/deploy-check runs this instead.
//
// Usage: go run . [-profile NAME]... FILE  (prints one line per service; exits 1 naming the
// problem). The resolved model is not printed: it would show the settings of .env.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type profiles []string

func (p *profiles) String() string     { return strings.Join(*p, ",") }
func (p *profiles) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var active profiles
	flag.Var(&active, "profile", "profile to enable (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-config [-profile NAME]... docker-compose.yml")
		os.Exit(2)
	}
	file, err := filepath.Abs(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	options, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithProfiles(active),
		cli.WithName("pushservice"),
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	for _, name := range project.ServiceNames() {
		service := project.Services[name]
		fmt.Printf("compose-config: %-10s image %s, healthcheck %t, profiles %v\n",
			name, service.Image, service.HealthCheck != nil, service.Profiles)
	}
	fmt.Printf("compose-config: %d services, profiles %v: loaded as docker compose loads them\n",
		len(project.Services), []string(active))
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "compose-config: %v\n", err)
	os.Exit(1)
}
