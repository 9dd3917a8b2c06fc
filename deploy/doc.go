// Package deploy holds no code: it is where the deployment files live
// (prometheus/, grafana/, kubernetes/) and where their tests run. The tests
// check docker-compose.yml, the Dockerfile, the Prometheus configuration and
// rules, the Grafana dashboard and the Kubernetes example with its KEDA
// ScaledObjects against the real binaries, and run a real Prometheus
// server against a local stack.
package deploy
