// Command kstatus-check prints, for every Kubernetes object it reads, the health that kstatus
// (sigs.k8s.io/cli-utils/pkg/kstatus/status) computes for it: the library Flux and other GitOps
// tools use to decide whether what they applied is healthy. It lets tests check that the
// status Switchyard writes reads as intended, without those tools.
//
// Usage:
//
//	kstatus-check FILE...   (FILE may be - for standard input)
//	kstatus-check --version (the cli-utils version it was built with)
//
// Each file holds JSON or YAML: one object, several (YAML documents separated by ---, or JSON
// values one after another), or a List whose items are objects. Output is one JSON array on
// standard output, one entry per object in input order:
//
//	[{"file": "...", "apiVersion": "...", "kind": "...", "namespace": "...", "name": "...",
//	  "status": "Current", "message": "Resource is Ready"}]
//
// status is one of InProgress, Failed, Current, Terminating, Unknown. Exit code 0 when every
// object was read, 2 on unreadable input (the message names the file and document).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	File       string `json:"file"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Message    string `json:"message"`
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Printf("kstatus-check (sigs.k8s.io/cli-utils %s)\n", kstatusVersion())
		return
	}
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: kstatus-check FILE... (- reads standard input)")
		os.Exit(2)
	}
	verdicts := []verdict{}
	for _, path := range os.Args[1:] {
		objects, err := readFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus-check: %s: %v\n", path, err)
			os.Exit(2)
		}
		for _, obj := range objects {
			verdicts = append(verdicts, compute(path, obj))
		}
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(verdicts); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus-check: writing the result: %v\n", err)
		os.Exit(2)
	}
}

// kstatusVersion is the version of the cli-utils module compiled in.
func kstatusVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "sigs.k8s.io/cli-utils" {
				return dep.Version
			}
		}
	}
	return "unknown"
}

// compute asks kstatus; an object it cannot judge (a malformed field) is Unknown, with its error.
func compute(path string, obj *unstructured.Unstructured) verdict {
	v := verdict{
		File:       path,
		APIVersion: obj.GetAPIVersion(),
		Kind:       obj.GetKind(),
		Namespace:  obj.GetNamespace(),
		Name:       obj.GetName(),
	}
	result, err := status.Compute(obj)
	if err != nil {
		v.Status, v.Message = string(status.UnknownStatus), err.Error()
		return v
	}
	v.Status, v.Message = string(result.Status), result.Message
	return v
}

func readFile(path string) ([]*unstructured.Unstructured, error) {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	return readObjects(bufio.NewReader(in))
}

// readObjects decodes every document of a JSON or YAML stream, unpacking Lists. Numbers are
// read as the API server sends them (integers stay int64), which kstatus relies on.
func readObjects(in io.Reader) ([]*unstructured.Unstructured, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(in, 4096)
	var objects []*unstructured.Unstructured
	for document := 1; ; document++ {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d: %w", document, err)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty YAML document
		}
		decoded, _, err := unstructured.UnstructuredJSONScheme.Decode(raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: not a Kubernetes object: %w", document, err)
		}
		switch obj := decoded.(type) {
		case *unstructured.Unstructured:
			objects = append(objects, obj)
		case *unstructured.UnstructuredList:
			for i := range obj.Items {
				objects = append(objects, &obj.Items[i])
			}
		default:
			return nil, fmt.Errorf("document %d: unexpected %T", document, decoded)
		}
	}
	if len(objects) == 0 {
		return nil, errors.New("no objects found")
	}
	return objects, nil
}
