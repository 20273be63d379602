// SmartVM integer kernels for NVIDIA GPUs, compiled at run time with NVRTC.
//
// Each kernel is SPEC.md transliterated: int8 tensors, int32 accumulators that wrap (kept in
// `unsigned int`, whose overflow C++ defines as modular), the single half-up rounding of
// `requant`, and saturation. The host side (`mod.rs`) checks every shape and quantization block
// before launching, so indices here are always in range.
//
// Geometry arrives as a small int array `g` (layouts documented per kernel). Outputs are written
// in the reference order: channel-major, then D, H, W.

typedef unsigned int u32;
typedef long long i64;

__device__ __forceinline__ signed char requant(u32 acc, int mult, int shift, int zero, int lo,
                                               int hi) {
    int n = 31 + shift;
    i64 r = ((i64)(int)acc * (i64)mult + (1LL << (n - 1))) >> n;
    i64 v = (i64)zero + r;
    v = v < lo ? lo : (v > hi ? hi : v);
    return (signed char)v;
}

// Input coordinate of output `o`, tap `k`, or -1 in padding.
__device__ __forceinline__ int tap(int o, int k, int stride, int pad, int dil, int size) {
    int i = o * stride - pad + k * dil;
    return (i >= 0 && i < size) ? i : -1;
}

// g: in c d h w | out c d h w | kernel d h w | stride d h w | pad d h w | dil d h w | groups |
//    z_in z_out lo hi
extern "C" __global__ void conv(const int* g, const signed char* x, const signed char* wts,
                                const int* bias, const int* mult, const int* shift,
                                signed char* y, u32 total) {
    u32 idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    int ic = g[0], id = g[1], ih = g[2], iw = g[3];
    int oc = g[4], od = g[5], oh = g[6], ow = g[7];
    int kd = g[8], kh = g[9], kw = g[10];
    int groups = g[20], zx = g[21];
    int ox = idx % ow, rest = idx / ow;
    int oy = rest % oh;
    rest /= oh;
    int oz = rest % od;
    int o = rest / od;
    int group_in = ic / groups, group_out = oc / groups;
    int grp = o / group_out;
    const signed char* w = wts + (size_t)o * group_in * kd * kh * kw;
    u32 acc = (u32)bias[o];
    for (int ci = 0; ci < group_in; ci++) {
        const signed char* plane = x + (size_t)(grp * group_in + ci) * id * ih * iw;
        for (int a = 0; a < kd; a++) {
            int zi = tap(oz, a, g[11], g[14], g[17], id);
            if (zi < 0) { w += kh * kw; continue; }
            for (int b = 0; b < kh; b++) {
                int yi = tap(oy, b, g[12], g[15], g[18], ih);
                if (yi < 0) { w += kw; continue; }
                const signed char* row = plane + ((size_t)zi * ih + yi) * iw;
                for (int e = 0; e < kw; e++) {
                    int xi = tap(ox, e, g[13], g[16], g[19], iw);
                    if (xi >= 0) acc += (u32)(((int)row[xi] - zx) * (int)w[e]);
                }
                w += kw;
            }
        }
    }
    y[idx] = requant(acc, mult[o], shift[o], g[22], g[23], g[24]);
}

// g: in c h w | out c h w | k stride pad groups | z_in z_out lo hi
extern "C" __global__ void conv_transpose(const int* g, const signed char* x,
                                          const signed char* wts, const int* bias,
                                          const int* mult, const int* shift, signed char* y,
                                          u32 total) {
    u32 idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    int ic = g[0], ih = g[1], iw = g[2];
    int oc = g[3], oh = g[4], ow = g[5];
    int k = g[6], s = g[7], pad = g[8], groups = g[9], zx = g[10];
    int ox = idx % ow, rest = idx / ow;
    int oy = rest % oh;
    int o = rest / oh;
    int group_in = ic / groups, group_out = oc / groups;
    int grp = o / group_out, o_in_group = o % group_out;
    u32 acc = (u32)bias[o];
    for (int ci = 0; ci < group_in; ci++) {
        int c = grp * group_in + ci;
        for (int b = 0; b < k; b++) {
            int num = oy + pad - b;
            if (num < 0 || num % s != 0 || num / s >= ih) continue;
            int yi = num / s;
            for (int e = 0; e < k; e++) {
                int numx = ox + pad - e;
                if (numx < 0 || numx % s != 0 || numx / s >= iw) continue;
                int xi = numx / s;
                int xv = x[((size_t)c * ih + yi) * iw + xi];
                int wv = wts[(((size_t)c * group_out + o_in_group) * k + b) * k + e];
                acc += (u32)((xv - zx) * wv);
            }
        }
    }
    y[idx] = requant(acc, mult[o], shift[o], g[11], g[12], g[13]);
}

// g: in c h w | out c h w | k stride pad average
extern "C" __global__ void pool(const int* g, const signed char* x, signed char* y, u32 total) {
    u32 idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    int ih = g[1], iw = g[2];
    int oh = g[4], ow = g[5];
    int k = g[6], s = g[7], pad = g[8], average = g[9];
    int ox = idx % ow, rest = idx / ow;
    int oy = rest % oh;
    int c = rest / oh;
    int best = -128;
    i64 sum = 0, count = 0;
    for (int b = 0; b < k; b++) {
        int yi = tap(oy, b, s, pad, 1, ih);
        if (yi < 0) continue;
        for (int e = 0; e < k; e++) {
            int xi = tap(ox, e, s, pad, 1, iw);
            if (xi < 0) continue;
            int v = x[((size_t)c * ih + yi) * iw + xi];
            best = v > best ? v : best;
            sum += v;
            count++;
        }
    }
    if (average) {
        // floor((2·sum + count) / (2·count)): half-up rounded mean, floor division.
        i64 den = 2 * (count > 0 ? count : 1);
        i64 num = 2 * sum + den / 2;
        i64 q = num / den;
        if ((num % den != 0) && (num < 0)) q -= 1;
        y[idx] = (signed char)q;
    } else {
        y[idx] = (signed char)best;
    }
}

// One warp per output row. g: n z_in z_out lo hi
extern "C" __global__ void fully_connected(const int* g, const signed char* x,
                                           const signed char* wts, const int* bias,
                                           const int* mult, const int* shift, signed char* y,
                                           u32 rows) {
    u32 warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    u32 lane = threadIdx.x % 32;
    if (warp >= rows) return;
    int n = g[0], zx = g[1];
    const signed char* w = wts + (size_t)warp * n;
    u32 acc = 0;
    for (int t = lane; t < n; t += 32) acc += (u32)(((int)x[t] - zx) * (int)w[t]);
    for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) {
        acc += (u32)bias[warp];
        y[warp] = requant(acc, mult[warp], shift[warp], g[2], g[3], g[4]);
    }
}

// One thread per output. g: m k n z_a z_b z_out lo hi mult shift
extern "C" __global__ void matmul(const int* g, const signed char* a, const signed char* b,
                                  signed char* y, u32 total) {
    u32 idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    int k = g[1], n = g[2], za = g[3], zb = g[4];
    int r = idx / n, c = idx % n;
    u32 acc = 0;
    for (int t = 0; t < k; t++)
        acc += (u32)(((int)a[(size_t)r * k + t] - za) * ((int)b[(size_t)t * n + c] - zb));
    y[idx] = requant(acc, g[8], g[9], g[5], g[6], g[7]);
}
