package shoespb

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestWire pins the bytes on the wire to myshoes' protocol (its
// api/proto/myshoes.proto): field numbers and types, enum numbers and the
// gRPC method paths. A renumbered field or a renamed package or service
// breaks every shoes plugin, and this test.
func TestWire(t *testing.T) {
	cases := []struct {
		name string
		msg  proto.Message
		want []byte
	}{
		// runner_name 1, setup_script 2 (strings), resource_type 3 (enum), labels 4 (repeated string)
		{"AddInstanceRequest", &AddRequest{RunnerName: "r", SetupScript: "s", Size: Size_SIZE_LARGE, Labels: []string{"a", "b"}},
			[]byte{0x0a, 1, 'r', 0x12, 1, 's', 0x18, 5, 0x22, 1, 'a', 0x22, 1, 'b'}},
		// cloud_id 1, shoes_type 2, ip_address 3 (strings), resource_type 4 (enum)
		{"AddInstanceResponse", &AddResponse{CloudId: "c", ShoesType: "t", IpAddress: "i", Size: Size_SIZE_4XLARGE},
			[]byte{0x0a, 1, 'c', 0x12, 1, 't', 0x1a, 1, 'i', 0x20, 9}},
		// cloud_id 1 (string), labels 2 (repeated string)
		{"DeleteInstanceRequest", &DeleteRequest{CloudId: "c", Labels: []string{"a"}},
			[]byte{0x0a, 1, 'c', 0x12, 1, 'a'}},
		{"DeleteInstanceResponse", &DeleteResponse{}, []byte{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.want) {
				t.Errorf("wire bytes % x, want % x", got, c.want)
			}
		})
	}
	for size, n := range map[Size]int32{Size_SIZE_UNKNOWN: 0, Size_SIZE_NANO: 1, Size_SIZE_MICRO: 2, Size_SIZE_SMALL: 3,
		Size_SIZE_MEDIUM: 4, Size_SIZE_LARGE: 5, Size_SIZE_XLARGE: 6, Size_SIZE_2XLARGE: 7, Size_SIZE_3XLARGE: 8, Size_SIZE_4XLARGE: 9} {
		if int32(size) != n {
			t.Errorf("%v = %d, want %d", size, size, n)
		}
	}
	if Shoes_AddInstance_FullMethodName != "/whywaita.myshoes.Shoes/AddInstance" ||
		Shoes_DeleteInstance_FullMethodName != "/whywaita.myshoes.Shoes/DeleteInstance" {
		t.Errorf("method paths %s, %s", Shoes_AddInstance_FullMethodName, Shoes_DeleteInstance_FullMethodName)
	}
}
