package router

import (
	"context"

	"github.com/switchboard-llm/switchboard/internal/catalog"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// publishModels tells ingress which models this router serves (see
// internal/catalog), when the topics spec has the models topic. A failure
// is logged: ingress then keeps the list it had, and the router still
// dead-letters requests for models it does not serve.
func (r *Router) publishModels(ctx context.Context, rt Routing) {
	if _, ok := r.cfg.Topics.Topic(topicspec.Models); !ok {
		return
	}
	topic := r.cfg.Topics.Name(topicspec.Models)
	models := rt.Models()
	if err := catalog.Publish(ctx, r.cfg.Kafka.Opts(r.log), topic, models); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("could not publish the served models; ingress keeps the list it had", "topic", topic, "err", err)
		}
		return
	}
	r.log.Info("served models published", "topic", topic, "models", len(models))
}
