package sse

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func collect(t *testing.T, in string, max int) ([]string, []string, error) {
	t.Helper()
	r := NewReader(strings.NewReader(in), max)
	var raws, datas []string
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return raws, datas, nil
			}
			return raws, datas, err
		}
		raws = append(raws, string(ev.Raw))
		datas = append(datas, string(ev.Data))
	}
}

func TestEvents(t *testing.T) {
	in := "data: {\"a\":1}\n\n: comment\ndata: x\ndata: y\n\r\nevent: ping\ndata:z\n\ndata: [DONE]\n\n"
	raws, datas, err := collect(t, in, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(raws, "") != in {
		t.Fatalf("raw bytes not passed through whole: %q", raws)
	}
	want := []string{`{"a":1}`, "x\ny", "z", "[DONE]"}
	if strings.Join(datas, "|") != strings.Join(want, "|") {
		t.Fatalf("%q", datas)
	}
}

func TestUnterminatedTailAndLongLines(t *testing.T) {
	long := strings.Repeat("a", 100_000)
	raws, datas, err := collect(t, "data: "+long+"\n\ndata: tail", 1<<20)
	if err != nil || len(datas) != 2 || datas[0] != long || datas[1] != "tail" || raws[1] != "data: tail" {
		t.Fatalf("%v %d", err, len(datas))
	}
	if _, _, err := collect(t, "data: "+long+"\n\n", 1000); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("limit not enforced: %v", err)
	}
}
