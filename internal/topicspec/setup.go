package topicspec

import (
	"context"
	"log/slog"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// Setup is what a service binary does with topics at start: load the spec
// at path ("" = built in), apply prefix when not empty, and, when provision
// is set, reconcile the cluster of kafka with it.
func Setup(ctx context.Context, path, prefix string, provision bool, kafka kafkaconf.Config, logger *slog.Logger) (*Spec, error) {
	spec, err := Load(path)
	if err != nil {
		return nil, err
	}
	if prefix != "" {
		spec = spec.WithPrefix(prefix)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if provision {
		if _, err := Provision(ctx, kafka, spec, logger); err != nil {
			return nil, err
		}
	}
	return spec, nil
}
