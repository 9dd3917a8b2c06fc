package deploy

import (
	"strings"
	"testing"

	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
)

// TestOneKafkaVersion: the local cluster (deploy/kafka-local/pom.xml) and
// docker-compose.yml's apache/kafka image run the same Kafka version.
func TestOneKafkaVersion(t *testing.T) {
	want, err := kafkalocal.Version("kafka-local/pom.xml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(want, "4.") {
		t.Errorf("pinned Kafka version %s, want a 4.x release", want)
	}
	c := loadCompose(t)
	n := 0
	for name, s := range c.Services {
		img, ok := strings.CutPrefix(s.Image, "apache/kafka:")
		if !ok {
			continue
		}
		n++
		if img != want {
			t.Errorf("docker-compose.yml service %s runs apache/kafka:%s, want %s (the version of deploy/kafka-local/pom.xml)", name, img, want)
		}
	}
	if n == 0 {
		t.Error("no apache/kafka service in docker-compose.yml")
	}
}
