// Test classes run one at a time: TorchSharp 0.107 passes the raw handle of an implicitly created Scalar (e.g. the 1 in
// t.add(x), the 0 in t.clamp_min(0)) to libtorch, so a garbage collection triggered by another thread mid-call can
// finalize and free it while libtorch reads it ("alpha must not be a floating point number", "Scalar.toDouble" seen
// once in a few full runs with parallel classes). With one test thread no other managed thread allocates during a
// native call, so no collection can land inside it.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
