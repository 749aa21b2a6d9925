// deploy-check renders kustomizations the way `kubectl apply -k` does (kustomize's krusty, the
// library kubectl embeds) and decodes every object strictly into its Kubernetes API type, as
// the API server does with field validation "Strict": an unknown, misspelt, duplicated or
// wrongly-cased field, a kind or apiVersion the API does not have, or a value of the wrong
// type is an error. It prints, for each folder on its command line, the objects as JSON of the
// typed structs: [{"dir": ..., "objects": [{"apiVersion", "kind", "object"}]}].
// Errors go to stderr, one per object, and the exit status is 1.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

type object struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Object     runtime.Object `json:"object"`
}

type rendered struct {
	Dir     string   `json:"dir"`
	Objects []object `json:"objects"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: deploy-check <kustomization folder>...")
		os.Exit(2)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	kustomizer := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	var out []rendered
	failed := false
	for _, dir := range os.Args[1:] {
		resources, err := kustomizer.Run(filesys.MakeFsOnDisk(), dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: kustomize: %v\n", dir, err)
			failed = true
			continue
		}
		r := rendered{Dir: dir, Objects: []object{}}
		for _, res := range resources.Resources() {
			text, err := res.AsYAML()
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %s: %v\n", dir, res.CurId(), err)
				failed = true
				continue
			}
			obj, gvk, err := decoder.Decode(text, nil, nil)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %s: %v\n", dir, res.CurId(), err)
				failed = true
				continue
			}
			r.Objects = append(r.Objects, object{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Object: obj})
		}
		out = append(out, r)
	}
	if failed {
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
