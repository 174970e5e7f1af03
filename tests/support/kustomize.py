"""A small renderer of the kustomizations under deploy/kubernetes, for validating them offline (kustomize is
not a Python package). It renders the subset those files use, the way kustomize does:

- ``resources``: files (every YAML document) and directories (their own kustomization, rendered first);
- ``labels`` with ``pairs``: added to every object's ``metadata.labels`` (not to selectors or templates);
- ``patches`` with a ``path``: a strategic merge patch, applied to the object of the patch's kind and name,
  or, with a ``target`` (``kind``, ``name``, ``labelSelector`` of ``key=value`` pairs), to every object it
  selects. Maps are merged key by key; lists of maps with a ``name`` (containers, env, ports, volumes) are
  merged item by item by that name; any other list, and any scalar, is replaced;
- ``images``: ``newName`` and ``newTag`` of every container whose image is ``name``;
- ``replicas``: ``spec.replicas`` of the Deployment of that name;
- ``namespace``: set on every object but a Namespace.

Anything else in a kustomization is refused, so that a file using more than this cannot pass unnoticed.
"""

import copy
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]
KNOWN = {"apiVersion", "kind", "resources", "labels", "patches", "images", "replicas", "namespace"}


def render(directory: Path) -> list[Object]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise ValueError(f"{directory}: the renderer does not know {sorted(unknown)}")
    objects: list[Object] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for entry in kustomization.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
    for entry in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / entry["path"]).read_text())
        targets = [obj for obj in objects if selected(obj, entry.get("target"), patch)]
        if not targets:
            raise ValueError(f"{directory / entry['path']} patches nothing")
        for obj in targets:
            merged = merge(obj, {k: v for k, v in patch.items() if k != "metadata"})
            obj.clear()
            obj.update(merged)
    for image in kustomization.get("images", []):
        for container in containers(objects):
            if container["image"].split(":")[0] == image["name"]:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    for entry in kustomization.get("replicas", []):
        [deployment] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == entry["name"]]
        deployment["spec"]["replicas"] = entry["count"]
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] != "Namespace":
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def selected(obj: Object, target: dict | None, patch: Object) -> bool:
    if target is None:
        return obj["kind"] == patch["kind"] and obj["metadata"]["name"] == patch["metadata"]["name"]
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "name" in target and obj["metadata"]["name"] != target["name"]:
        return False
    labels = obj["metadata"].get("labels", {})
    pairs = (pair.split("=", 1) for pair in target.get("labelSelector", "").split(",") if pair)
    return all(labels.get(key) == value for key, value in pairs)


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and named(base) and named(patch):
        items: list[Any] = copy.deepcopy(base)
        for item in patch:
            at = next((i for i, old in enumerate(items) if old["name"] == item["name"]), None)
            if at is None:
                items.append(copy.deepcopy(item))
            else:
                items[at] = merge(items[at], item)
        return items
    return copy.deepcopy(patch)


def named(items: list) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def containers(objects: list[Object]) -> list[Object]:
    return [
        container
        for obj in objects
        if obj["kind"] in ("Deployment", "StatefulSet")
        for container in obj["spec"]["template"]["spec"]["containers"]
    ]
