#!/usr/bin/env python3
"""tensorboard_descriptors.py OUT: writes TensorBoard's event message definitions (event.proto and
every file it imports, imports first) as a serialized FileDescriptorSet, for
`protoc --descriptor_set_in=OUT` to generate the C++ classes from (Note [TensorBoard events]),
and prints their file names, one a line (tensorboard/compat/proto/event.proto, ...).

PyPI's tensorboard ships no .proto files, only their compiled *_pb2.py modules, which hold each
file's descriptor; so the definitions come from the tensorboard package that setup installs
into the venv, and nothing of it is committed.
"""
import os
import sys

from google.protobuf import descriptor_pb2
from tensorboard.compat.proto import event_pb2


def add_with_imports(fd, out, seen):
    if fd.name in seen:
        return
    seen.add(fd.name)
    for dep in fd.dependencies:
        add_with_imports(dep, out, seen)
    proto = out.file.add()
    fd.CopyToProto(proto)


def main():
    out_path = sys.argv[1]
    files = descriptor_pb2.FileDescriptorSet()
    add_with_imports(event_pb2.DESCRIPTOR, files, set())
    data = files.SerializeToString()
    for f in files.file:
        print(f.name)
    # Written only when it changes, so that a configure that finds the same definitions does not
    # regenerate (and recompile) the C++ classes.
    try:
        with open(out_path, "rb") as f:
            if f.read() == data:
                return 0
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(out_path + ".tmp", out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
