// Command ferretdb-launcher runs an embedded FerretDB v1 (MongoDB wire protocol)
// server for local development and tests.
//
// It is a thin wrapper around github.com/FerretDB/FerretDB/ferretdb so that we can
// build FerretDB with a plain `go build` (FerretDB's own command requires a
// generated build/version/version.txt file and panics without it).
//
// Telemetry: the embeddable package disables telemetry itself (it never creates
// a telemetry reporter and locks the telemetry state to "disabled"); its state
// is kept in memory only, so no state directory is needed.
//
// Every flag may also be set through an environment variable (flag wins):
//
//	-listen-addr     FERRETDB_LISTEN_ADDR     (default 127.0.0.1:27017)
//	-listen-unix     FERRETDB_LISTEN_UNIX     (default: disabled)
//	-handler         FERRETDB_HANDLER         (sqlite | postgresql; default sqlite)
//	-sqlite-url      FERRETDB_SQLITE_URL      (default file:data/; must be a directory URI ending with '/')
//	-postgresql-url  FERRETDB_POSTGRESQL_URL  (default postgres://127.0.0.1:5432/ferretdb)
//	-log-level       FERRETDB_LOG_LEVEL       (debug | info | warn | error; default info)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(strings.ToUpper(strings.TrimSpace(s))))
	return l, err
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-launcher: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	listenAddr := flag.String("listen-addr", envOr("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"),
		"TCP listen address (host:port); empty disables TCP [env FERRETDB_LISTEN_ADDR]")
	listenUnix := flag.String("listen-unix", envOr("FERRETDB_LISTEN_UNIX", ""),
		"Unix domain socket path; empty disables it [env FERRETDB_LISTEN_UNIX]")
	handler := flag.String("handler", envOr("FERRETDB_HANDLER", "sqlite"),
		"backend handler: sqlite or postgresql [env FERRETDB_HANDLER]")
	sqliteURL := flag.String("sqlite-url", envOr("FERRETDB_SQLITE_URL", "file:data/"),
		"SQLite URI of a directory, e.g. file:/path/to/dir/ [env FERRETDB_SQLITE_URL]")
	postgresqlURL := flag.String("postgresql-url", envOr("FERRETDB_POSTGRESQL_URL", "postgres://127.0.0.1:5432/ferretdb"),
		"PostgreSQL connection string [env FERRETDB_POSTGRESQL_URL]")
	logLevel := flag.String("log-level", envOr("FERRETDB_LOG_LEVEL", "info"),
		"log level: debug, info, warn, error [env FERRETDB_LOG_LEVEL]")
	flag.Parse()

	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	level, err := parseLevel(*logLevel)
	if err != nil {
		return fmt.Errorf("invalid -log-level %q: %w", *logLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	conf := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP:  *listenAddr,
			Unix: *listenUnix,
		},
		Logger:  logger,
		Handler: *handler,
	}

	switch *handler {
	case "sqlite":
		u := *sqliteURL
		if !strings.HasSuffix(u, "/") {
			return fmt.Errorf("-sqlite-url must be a directory URI ending with '/', got %q", u)
		}
		// FerretDB requires the directory to exist.
		if dir, ok := strings.CutPrefix(u, "file:"); ok {
			if i := strings.IndexByte(dir, '?'); i >= 0 {
				dir = dir[:i]
			}
			if dir != "" {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return fmt.Errorf("creating SQLite directory: %w", err)
				}
			}
		}
		conf.SQLiteURL = u
	case "postgresql":
		conf.PostgreSQLURL = *postgresqlURL
	default:
		return fmt.Errorf("unsupported -handler %q (want sqlite or postgresql)", *handler)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	f, err := ferretdb.New(conf)
	if err != nil {
		return err
	}

	logger.Info("starting FerretDB",
		"handler", *handler, "tcp", *listenAddr, "unix", *listenUnix, "sqlite_url", conf.SQLiteURL)

	errCh := make(chan error, 1)
	go func() { errCh <- f.Run(ctx) }()

	select {
	case err = <-errCh:
		// Run returned before a signal: listener failure or similar.
		if err == nil && ctx.Err() == nil {
			err = errors.New("FerretDB stopped unexpectedly")
		}
	case <-ctx.Done():
		logger.Info("signal received, shutting down")
		stop() // a second signal kills the process immediately
		err = <-errCh
	}
	if err != nil {
		return err
	}
	logger.Info("FerretDB stopped")
	return nil
}
