package reqview

import "testing"

// FuzzParse: any bytes a client sends either parse or are refused with a 400;
// nothing panics, and an accepted body always names a model.
func FuzzParse(f *testing.F) {
	f.Add(uint8(1), []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	f.Add(uint8(2), []byte(`{"model":"m","prompt":["a"],"max_tokens":5}`))
	f.Add(uint8(3), []byte(`{"model":"m","input":"x"}`))
	f.Fuzz(func(t *testing.T, e uint8, body []byte) {
		ep := Endpoint(e%3 + 1)
		v, err := Parse(ep, body)
		if err != nil {
			if err.Status != 400 || err.Message == "" {
				t.Fatalf("bad refusal %+v", err)
			}
			return
		}
		if v.Model == "" || v.Endpoint != ep || v.N < 1 {
			t.Fatalf("accepted without model: %+v", v)
		}
	})
}
