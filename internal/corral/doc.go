// Package corral holds corral's domain: the words of DESIGN.md as types
// (Tenant, Target, Pool, Job, Instance), the state machines of jobs and
// instances with their transition tables, and the ports that adapters
// implement (Forge, Provider, Store) plus the Clock.
//
// This package imports no adapter: no database, forge, provider or HTTP
// package. Adapters import it, never the reverse.
package corral
