// Package deploy holds no code: it is where the deployment files live
// (prometheus/, grafana/) and where their tests run. The tests check
// docker-compose.yml, the Dockerfile, the Prometheus configuration and
// rules, and the Grafana dashboard against the real binaries, and run a
// real Prometheus server against a local stack.
package deploy
