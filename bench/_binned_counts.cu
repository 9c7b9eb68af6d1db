// Candidate for the drift engine's binned pass on a GPU (issue 13, item 3): the window's counts
// per reference-quantile bin, every feature in one launch, one read of each column.
//
// Bin i of a feature is [edge[i-1], edge[i]): a value's bin is the number of edges <= it, as the
// engine's searchsorted on the sorted window gives. So each thread counts, per edge, the values
// >= that edge (the comparison in double, as the engine compares), and the non-missing values;
// bin counts are differences of those. No atomics per value: each warp sums its threads'
// counters by shuffles and adds them to the feature's row of `out` once.
//
// x: features x rows float32, row-major (one contiguous column per feature). edges: features x
// MAXE float64; n_edges[f] of them are used. vec: 1 when rows % 4 == 0 and x is 16-byte
// aligned (float4 loads). out: features x (MAXE + 1) uint64, zeroed: [non-missing, >= edge 0,
// ..., >= edge MAXE-1]. Launch: grid (any, features), block a multiple of 32.
#define MAXE 15

__device__ __forceinline__ void acc(float v, const double (&e)[MAXE], unsigned int &nn,
                                    unsigned int (&ge)[MAXE]) {
    if (v != v) return;  // NaN: missing, in no bin
    const double d = (double)v;
    nn += 1;
#pragma unroll
    for (int j = 0; j < MAXE; ++j) ge[j] += (d >= e[j]) ? 1u : 0u;
}

extern "C" __global__ void binned_counts(const float* __restrict__ x, const long long rows,
                                         const double* __restrict__ edges,
                                         const int* __restrict__ n_edges, const int vec,
                                         unsigned long long* __restrict__ out) {
    const int f = blockIdx.y;
    const int ne = n_edges[f];
    // Unused edges are NaN: no value compares >= NaN, so they count nothing.
    const double nan = __longlong_as_double(0x7ff8000000000000LL);
    double e[MAXE];
#pragma unroll
    for (int j = 0; j < MAXE; ++j) e[j] = (j < ne) ? edges[f * MAXE + j] : nan;
    unsigned int nn = 0;
    unsigned int ge[MAXE];
#pragma unroll
    for (int j = 0; j < MAXE; ++j) ge[j] = 0;
    const float* col = x + (long long)f * rows;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (vec) {
        const float4* col4 = reinterpret_cast<const float4*>(col);
        const long long n4 = rows >> 2;
        for (long long i = start; i < n4; i += stride) {
            const float4 q = col4[i];
            acc(q.x, e, nn, ge); acc(q.y, e, nn, ge); acc(q.z, e, nn, ge); acc(q.w, e, nn, ge);
        }
    } else {
        for (long long i = start; i < rows; i += stride) acc(col[i], e, nn, ge);
    }
    // Sum over the warp, then one atomic per counter per warp.
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        nn += __shfl_down_sync(0xffffffffu, nn, off);
#pragma unroll
        for (int j = 0; j < MAXE; ++j) ge[j] += __shfl_down_sync(0xffffffffu, ge[j], off);
    }
    if ((threadIdx.x & 31) == 0) {
        unsigned long long* o = out + (long long)f * (MAXE + 1);
        atomicAdd(o, (unsigned long long)nn);
#pragma unroll
        for (int j = 0; j < MAXE; ++j)
            if (j < ne) atomicAdd(o + 1 + j, (unsigned long long)ge[j]);
    }
}
