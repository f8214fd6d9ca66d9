"""C++ code generation for protos with Debian's protoc and grpc_cpp_plugin.

Native proto_library and gRPC's cc_grpc_library need repositories that are
downloads; offline, a genrule running the system compiler works. Generated
headers keep their repository path ("protos/.../x.pb.h"), as in CMake.
"""

def cc_grpc_codegen(name, srcs, includes = [], deps = [], visibility = None):
    """Generates .pb and .grpc.pb sources for `srcs` into one cc_library.

    `includes`: further protoc import directories (absolute, system);
    `deps`: the libraries of what those imports generate.
    """
    exts = [".pb.h", ".pb.cc", ".grpc.pb.h", ".grpc.pb.cc"]
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ext for ext in exts]
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = outs,
        cmd = ("protoc -I. " + "".join(["-I" + i + " " for i in includes]) +
               "--cpp_out=$(GENDIR) --grpc_out=$(GENDIR) " +
               "--plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) $(SRCS)"),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = ["@system//:grpc"] + deps,
        visibility = visibility,
    )
