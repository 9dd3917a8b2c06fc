package acl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// ErrMissing marks a start refused because an ACL the role needs is
// missing.
var ErrMissing = errors.New("missing Kafka ACLs")

// Check asks the cluster, through cl, which operations this client may do
// on the resources of grants (Kafka's authorized operations: Metadata for
// topics, DescribeGroups for groups, DescribeCluster for the cluster; a
// transactional ID is checked with DescribeTransactions, which needs
// Describe, implied by Write). It returns an error wrapping ErrMissing that
// lists every grant the cluster does not give, as "WRITE on topic x"; who
// names the principal in that error. A topic that does not exist yet is not
// an ACL matter and is skipped; so is a resource the cluster does not
// report operations for.
func Check(ctx context.Context, cl *kgo.Client, grants []Grant, who string) error {
	var missing []Grant
	allowed := func(g Grant, ops int32) {
		if ops == math.MinInt32 { // not reported
			return
		}
		if !slices.Contains(kadm.DecodeACLOperations(ops), g.Operation) {
			missing = append(missing, g)
		}
	}
	byRes := map[kmsg.ACLResourceType]map[string][]Grant{}
	for _, g := range grants {
		if byRes[g.Resource] == nil {
			byRes[g.Resource] = map[string][]Grant{}
		}
		byRes[g.Resource][g.Name] = append(byRes[g.Resource][g.Name], g)
	}
	if topics := byRes[Topic]; len(topics) > 0 {
		req := kmsg.NewPtrMetadataRequest()
		req.IncludeTopicAuthorizedOperations = true
		for name := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("check ACLs: metadata: %w", err)
		}
		for _, t := range resp.Topics {
			var name string
			if t.Topic != nil {
				name = *t.Topic
			}
			gs := topics[name]
			switch err := kerr.ErrorForCode(t.ErrorCode); {
			case errors.Is(err, kerr.TopicAuthorizationFailed):
				missing = append(missing, gs...)
			case err == nil:
				for _, g := range gs {
					allowed(g, t.AuthorizedOperations)
				}
			}
		}
	}
	if groups := byRes[Group]; len(groups) > 0 {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.IncludeAuthorizedOperations = true
		for name := range groups {
			req.Groups = append(req.Groups, name)
		}
		seen := map[string]bool{}
		for _, sh := range cl.RequestSharded(ctx, req) {
			if sh.Err != nil {
				if errors.Is(sh.Err, kerr.GroupAuthorizationFailed) {
					continue // the groups of this shard are listed below as unseen
				}
				return fmt.Errorf("check ACLs: describe groups: %w", sh.Err)
			}
			for _, g := range sh.Resp.(*kmsg.DescribeGroupsResponse).Groups {
				seen[g.Group] = true
				gs := groups[g.Group]
				switch err := kerr.ErrorForCode(g.ErrorCode); {
				case errors.Is(err, kerr.GroupAuthorizationFailed):
					missing = append(missing, gs...)
				case err == nil:
					for _, gr := range gs {
						allowed(gr, g.AuthorizedOperations)
					}
				}
			}
		}
		for name, gs := range groups {
			if !seen[name] {
				missing = append(missing, gs...)
			}
		}
	}
	if cluster := byRes[Cluster]; len(cluster) > 0 {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.IncludeClusterAuthorizedOperations = true
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("check ACLs: describe cluster: %w", err)
		}
		for _, gs := range cluster {
			for _, g := range gs {
				allowed(g, resp.ClusterAuthorizedOperations)
			}
		}
	}
	for name, gs := range byRes[TransactionalID] {
		id := name
		if gs[0].Prefixed {
			id += "acl-check"
		}
		req := kmsg.NewPtrDescribeTransactionsRequest()
		req.TransactionalIDs = []string{id}
		for _, sh := range cl.RequestSharded(ctx, req) {
			err := sh.Err
			if err == nil {
				for _, s := range sh.Resp.(*kmsg.DescribeTransactionsResponse).TransactionStates {
					err = errors.Join(err, kerr.ErrorForCode(s.ErrorCode))
				}
			}
			if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
				missing = append(missing, gs...)
				break
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.SortFunc(missing, func(a, b Grant) int { return strings.Compare(a.String(), b.String()) })
	list := make([]string, len(missing))
	for i, g := range missing {
		list[i] = g.String()
	}
	return fmt.Errorf("%w: %s may not %s (grant them: docs/OPERATIONS.md, or topics --apply-acls)", ErrMissing, who, strings.Join(slices.Compact(list), "; "))
}

// CheckStart is a service's check at start: on a secured connection (TLS
// or SASL, where a cluster has principals to give ACLs to) it runs Check
// with role's grants, bounded by wait; on a plaintext one it does nothing.
// A cluster that does not answer within wait is left to the service's own
// retries (nil).
func CheckStart(ctx context.Context, kafka kafkaconf.Config, role string, p Params, wait time.Duration) error {
	if !kafka.Secured() {
		return nil
	}
	grants, err := For(role, p)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kafka.Opts(nil)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	who := "this client"
	switch {
	case kafka.SASL.Username != "":
		who = "User:" + kafka.SASL.Username
	case kafka.TLS.CertFile != "":
		who = "the principal of " + kafka.TLS.CertFile
	}
	for {
		err = Check(ctx, cl, grants, who)
		if err == nil || errors.Is(err, ErrMissing) || !kerr.IsRetriable(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		// A new cluster has no group coordinator until __consumer_offsets
		// exists: ask again, within wait.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}
