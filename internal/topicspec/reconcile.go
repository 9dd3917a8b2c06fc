package topicspec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Reconcile brings the cluster behind adm in line with spec, as far as it can
// without destroying anything:
//
//   - a topic missing from the cluster is created with the spec's partitions,
//     replication factor and configs (a topic created meanwhile by someone
//     else, TOPIC_ALREADY_EXISTS, is checked like any existing topic);
//   - an existing topic with fewer partitions than the spec is grown to the
//     spec's count;
//   - an existing topic with more partitions is reported in [Report.Surplus]
//     and left alone;
//   - every config key the spec sets whose value on the cluster differs is
//     reported in [Report.Drift] and left alone.
//
// Reconcile never deletes topics, never removes partitions, never alters
// configs, and does not check or change the replication factor of existing
// topics. Running it twice in a row changes nothing the second time.
//
// Failures are per topic: a topic that cannot be created, grown or described
// does not stop the others. Their errors are joined (errors.Join) into the
// returned error, each naming its topic, while the report keeps everything
// that succeeded. The report is never nil. Each action is logged to logger
// (nil discards logs).
func Reconcile(ctx context.Context, adm *kadm.Client, spec *Spec, logger *slog.Logger) (*Report, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	report := &Report{}
	if err := spec.Validate(); err != nil {
		return report, err
	}

	// kadm answers metadata from kgo's cache (5s by default), which
	// remembers "unknown topic" and old partition counts; WithAuthorizedOps
	// makes kadm ask the cluster instead, so that we act on what is there
	// now, including changes made by this very client.
	fresh := kadm.WithAuthorizedOps(ctx)

	names := spec.names()
	details, err := adm.ListTopics(fresh, names...)
	if err != nil {
		return report, fmt.Errorf("list topics: %w", err)
	}

	// current holds the partition count of every topic known to exist and
	// to be worth checking; absent topics are missing, failed or unverified.
	var (
		errs    []error
		current = make(map[string]int32, len(names))
		created = make(map[string]bool)
		raced   []string
	)
	for i, t := range spec.Topics {
		name := names[i]
		d, ok := details[name]
		switch {
		case ok && d.Err == nil:
			current[name] = int32(len(d.Partitions))
			continue
		case ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			errs = append(errs, fmt.Errorf("topic %s: describe: %w", name, d.Err))
			continue
		}

		resp, err := adm.CreateTopic(ctx, t.Partitions, t.ReplicationFactor, configPtrs(t.Configs), name)
		switch {
		case err == nil:
			created[name] = true
			report.Created = append(report.Created, name)
			logger.Info("topic created", "topic", name, "partitions", t.Partitions,
				"replication_factor", t.ReplicationFactor)
		case errors.Is(err, kerr.TopicAlreadyExists):
			logger.Info("topic created concurrently by another client", "topic", name)
			raced = append(raced, name)
		default:
			errs = append(errs, fmt.Errorf("topic %s: create: %w", name, withMessage(err, resp.ErrMessage)))
		}
	}

	if len(raced) > 0 {
		// Someone else created these between our listing and our create:
		// learn their partition counts and check them like any other.
		again, err := adm.ListTopics(fresh, raced...)
		if err != nil {
			errs = append(errs, fmt.Errorf("list topics: %w", err))
		}
		for _, name := range raced {
			if d, ok := again[name]; ok && d.Err == nil {
				current[name] = int32(len(d.Partitions))
			} else if err == nil {
				logger.Warn("topic exists but is not yet in metadata; not checked", "topic", name)
			}
		}
	}

	grown := make(map[string]bool)
	for i, t := range spec.Topics {
		name := names[i]
		got, ok := current[name]
		if !ok || created[name] {
			continue
		}
		switch {
		case got < t.Partitions:
			if err := grow(ctx, adm, name, t.Partitions); err != nil {
				errs = append(errs, fmt.Errorf("topic %s: grow from %d to %d partitions: %w", name, got, t.Partitions, err))
				delete(current, name)
				continue
			}
			grown[name] = true
			report.Grown = append(report.Grown, Growth{Topic: name, From: got, To: t.Partitions})
			logger.Info("topic partitions grown", "topic", name, "from", got, "to", t.Partitions)
		case got > t.Partitions:
			report.Surplus = append(report.Surplus, Surplus{Topic: name, Want: t.Partitions, Got: got})
			logger.Warn("topic has more partitions than the spec; not shrinking", "topic", name,
				"want", t.Partitions, "got", got)
		}
	}

	drifted, err := drift(ctx, adm, spec, names, current, created, report, logger)
	errs = append(errs, err, spec.checkCopartitioned(current, created, grown))

	for i, t := range spec.Topics {
		name := names[i]
		got, ok := current[name]
		if ok && !created[name] && !grown[name] && !drifted[name] && got == t.Partitions {
			report.InSync = append(report.InSync, name)
		}
	}
	return report, errors.Join(errs...)
}

// grow raises name's partition count to want. If the cluster refuses because
// someone else already grew it, that is success.
func grow(ctx context.Context, adm *kadm.Client, name string, want int32) error {
	resps, err := adm.UpdatePartitions(ctx, int(want), name)
	if err != nil {
		return err
	}
	r, ok := resps[name]
	if !ok {
		return errors.New("no answer for the topic")
	}
	if errors.Is(r.Err, kerr.InvalidPartitions) {
		// Kafka answers INVALID_PARTITIONS when the topic already has the
		// count asked for (a concurrent grow); anything else stays an error.
		d, lerr := adm.ListTopics(kadm.WithAuthorizedOps(ctx), name)
		if lerr == nil && d[name].Err == nil && int32(len(d[name].Partitions)) >= want {
			return nil
		}
	}
	return withMessage(r.Err, r.ErrMessage)
}

// drift compares the configs of every checked, pre-existing topic with the
// spec, appends differences to report.Drift, and returns the set of topics
// that drifted. A topic whose configs cannot be described is removed from
// current so that it is not reported in sync.
func drift(ctx context.Context, adm *kadm.Client, spec *Spec, names []string, current map[string]int32,
	created map[string]bool, report *Report, logger *slog.Logger,
) (map[string]bool, error) {
	drifted := make(map[string]bool)
	var check []string
	for _, name := range names {
		if _, ok := current[name]; ok && !created[name] {
			check = append(check, name)
		}
	}
	if len(check) == 0 {
		return drifted, nil
	}

	var errs []error
	rcs, err := adm.DescribeTopicConfigs(ctx, check...)
	if err != nil {
		// kadm may return *ShardErrors alongside the resources that did
		// answer; keep those.
		errs = append(errs, fmt.Errorf("describe topic configs: %w", err))
	}
	described := make(map[string]map[string]string, len(rcs))
	for _, rc := range rcs {
		if rc.Err != nil {
			errs = append(errs, fmt.Errorf("topic %s: describe configs: %w", rc.Name, withMessage(rc.Err, rc.ErrMessage)))
			continue
		}
		m := make(map[string]string, len(rc.Configs))
		for _, c := range rc.Configs {
			m[c.Key] = c.MaybeValue()
		}
		described[rc.Name] = m
	}

	for i, t := range spec.Topics {
		name := names[i]
		if _, ok := current[name]; !ok || created[name] {
			continue
		}
		got, ok := described[name]
		if !ok {
			delete(current, name)
			continue
		}
		for _, key := range slices.Sorted(maps.Keys(t.Configs)) {
			want := t.Configs[key]
			if got[key] == want {
				continue
			}
			drifted[name] = true
			report.Drift = append(report.Drift, Drift{Topic: name, Key: key, Want: want, Got: got[key]})
			logger.Warn("topic config differs from the spec; not altering", "topic", name, "key", key,
				"want", want, "got", got[key])
		}
	}
	return drifted, errors.Join(errs...)
}

// configPtrs converts configs to the form kadm takes.
func configPtrs(configs map[string]string) map[string]*string {
	m := make(map[string]*string, len(configs))
	for k, v := range configs {
		m[k] = kadm.StringPtr(v)
	}
	return m
}

// withMessage adds the broker's error message, if any, to err.
func withMessage(err error, msg string) error {
	if err == nil || msg == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, msg)
}
