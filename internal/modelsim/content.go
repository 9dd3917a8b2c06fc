package modelsim

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"strings"
)

// words is the vocabulary answers are drawn from.
var words = [...]string{
	"the", "a", "model", "answer", "kafka", "topic", "partition", "offset",
	"request", "stream", "token", "router", "switchboard", "message", "reply",
	"latency", "queue", "consumer", "producer", "broker", "record", "batch",
	"quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "of", "to",
	"in", "is", "it", "that", "for", "on", "with", "as", "simulated", "text",
	"was", "deterministic", "given", "prompt", "every", "time", "same", "words",
	"appear", "again", "here", "there", "then", "now", "because", "while",
	"we", "you", "they", "can", "will", "should",
}

// messageOverheadTokens is added to prompt_tokens for every message, like the
// role and separator tokens of a real chat template.
const messageOverheadTokens = 3

// completion returns the words of the answer to messages, between minWords
// and maxWords long. It depends on the messages' roles and contents only.
func completion(messages []message, minWords, maxWords int) []string {
	h := fnv.New64a()
	var sep [1]byte
	for _, m := range messages {
		h.Write([]byte(m.Role))
		h.Write(sep[:])
		h.Write([]byte(m.Content))
		h.Write(sep[:])
	}
	sum := h.Sum64()
	rng := rand.New(rand.NewPCG(sum, binary.LittleEndian.Uint64([]byte("modelsim"))))
	n := minWords + rng.IntN(maxWords-minWords+1)
	out := make([]string, n)
	for i := range out {
		out[i] = words[rng.IntN(len(words))]
	}
	return out
}

// deltas returns the stream deltas of an answer: the first word, then each
// further word with a leading space, so that their concatenation equals
// strings.Join(answer, " ").
func deltas(answer []string) []string {
	out := make([]string, len(answer))
	for i, w := range answer {
		if i > 0 {
			w = " " + w
		}
		out[i] = w
	}
	return out
}

// promptTokens counts the whitespace-separated words of messages plus
// messageOverheadTokens per message.
func promptTokens(messages []message) int {
	n := 0
	for _, m := range messages {
		n += messageOverheadTokens + len(strings.Fields(m.Content))
	}
	return n
}
