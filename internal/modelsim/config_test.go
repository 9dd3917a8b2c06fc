package modelsim

import (
	"math"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "zero", cfg: Config{}},
		{name: "full", cfg: Config{Models: []string{"a", "b"}, BaseLatency: time.Second, Jitter: time.Millisecond, LongTailFraction: 0.1, LongTailLatency: 5 * time.Second, Seed: 3, MinCompletionTokens: 1, MaxCompletionTokens: 2}},
		{name: "min above default max", cfg: Config{MinCompletionTokens: 100}},
		{name: "empty model", cfg: Config{Models: []string{"a", " "}}, wantErr: true},
		{name: "duplicate model", cfg: Config{Models: []string{"a", "a"}}, wantErr: true},
		{name: "negative latency", cfg: Config{BaseLatency: -1}, wantErr: true},
		{name: "negative jitter", cfg: Config{Jitter: -1}, wantErr: true},
		{name: "fraction above one", cfg: Config{LongTailFraction: 1.5}, wantErr: true},
		{name: "fraction NaN", cfg: Config{LongTailFraction: math.NaN()}, wantErr: true},
		{name: "negative long tail", cfg: Config{LongTailLatency: -time.Second}, wantErr: true},
		{name: "negative min", cfg: Config{MinCompletionTokens: -1}, wantErr: true},
		{name: "max below min", cfg: Config{MinCompletionTokens: 10, MaxCompletionTokens: 5}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			if _, err := New(tt.cfg, nil); (err != nil) != tt.wantErr {
				t.Errorf("New() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
