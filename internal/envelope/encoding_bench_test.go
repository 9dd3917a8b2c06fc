package envelope

import "testing"

// BenchmarkEncodeResultJSON and BenchmarkDecodeResultJSON are
// BenchmarkEncodeResult and BenchmarkDecodeResult for router-worker's
// --results-encoding json.
func BenchmarkEncodeResultJSON(b *testing.B) {
	res := benchFinal()
	b.ReportAllocs()
	for range b.N {
		if _, err := EncodeResultAs("switchboard.results", res, EncodingJSON); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeResultJSON(b *testing.B) {
	rec, err := EncodeResultAs("switchboard.results", benchFinal(), EncodingJSON)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := DecodeResult(rec); err != nil {
			b.Fatal(err)
		}
	}
}
