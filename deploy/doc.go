// Package deploy holds corral's deployment assets: Prometheus alert rules
// (prometheus/corral-alerts.yaml) and a Grafana dashboard
// (grafana/corral.json). Its tests load the rules with Prometheus's own rule
// parser and check that every metric the rules and the dashboard use is one
// corral exports.
package deploy
