// Command h2spec: a small command line for the h2spec conformance suite (library at
// github.com/summerwind/h2spec), for sluice's CI. The shared source tree lacks the upstream
// cmd/h2spec directory, so .ci/h2spec/build.sh adds this file as cmd/h2spec/main.go.
// Flags follow h2spec 2.x's names: -h HOST -p PORT -t -k -o SECONDS -P PATH -S -v
// -j/--junit-report FILE, then optional section arguments (e.g. http2/3.5).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/summerwind/h2spec"
	"github.com/summerwind/h2spec/config"
)

func main() {
	host := flag.String("h", "127.0.0.1", "target host")
	port := flag.Int("p", 0, "target port (default 80, or 443 with -t)")
	path := flag.String("P", "/", "target path")
	useTLS := flag.Bool("t", false, "connect over TLS")
	insecure := flag.Bool("k", false, "do not verify the server's certificate")
	timeout := flag.Int("o", 2, "time allowed for each test case, in seconds")
	maxHeader := flag.Int("max-header-length", 4000, "largest header field value sent")
	strict := flag.Bool("S", false, "also run the test cases marked strict")
	verbose := flag.Bool("v", false, "verbose output")
	dryRun := flag.Bool("dryrun", false, "list the test cases without running them")
	junit := flag.String("junit-report", "", "write a JUnit XML report to this file")
	flag.StringVar(junit, "j", "", "same as --junit-report")
	flag.Parse()

	if *port == 0 {
		*port = 80
		if *useTLS {
			*port = 443
		}
	}
	c := &config.Config{
		Host:         *host,
		Port:         *port,
		Path:         *path,
		Timeout:      time.Duration(*timeout) * time.Second,
		MaxHeaderLen: *maxHeader,
		JUnitReport:  *junit,
		Strict:       *strict,
		DryRun:       *dryRun,
		TLS:          *useTLS,
		Insecure:     *insecure,
		Verbose:      *verbose,
		Sections:     flag.Args(),
	}
	ok, err := h2spec.Run(c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "h2spec: %v\n", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
