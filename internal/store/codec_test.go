package store

import (
	"reflect"
	"testing"
	"unicode/utf8"
)

func TestDecodeStrings(t *testing.T) {
	for _, in := range [][]string{
		nil, {}, {""}, {"a"}, {"self-hosted", "linux", "x64"}, {"a,b", "c"},
		{`quo"te`, `back\slash`}, {"ünï", "tab\there", "<html>&"}, {"", "", "x"},
	} {
		enc, err := EncodeStrings(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeStrings(enc)
		if err != nil {
			t.Fatalf("DecodeStrings(%s): %v", enc, err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Errorf("round trip of %#v via %s = %#v", in, enc, got)
		}
	}
	if _, err := DecodeStrings(`["a",`); err == nil {
		t.Error("malformed list decoded without error")
	}
}

func FuzzDecodeStrings(f *testing.F) {
	f.Add("a", "b")
	f.Add(`"`, `\`)
	f.Fuzz(func(t *testing.T, a, b string) {
		if !utf8.ValidString(a) || !utf8.ValidString(b) {
			t.Skip("JSON replaces invalid UTF-8")
		}
		in := []string{a, b}
		enc, _ := EncodeStrings(in)
		got, err := DecodeStrings(enc)
		if err != nil || !reflect.DeepEqual(got, in) {
			t.Errorf("round trip of %q via %s = %q, %v", in, enc, got, err)
		}
	})
}
