/* Native training engine for ReLU multilayer perceptrons and the tutorial's CNN on the CPU.
 *
 * A plain C library (loaded with ctypes, no Python API): a training step at batch 32 is a few
 * small matrix products, so what decides the speed is the work around them. Here a whole run of
 * steps is one call: the batch is gathered from the uint8 images and scaled by 1/255 in place,
 * every layer is split by output columns between threads that meet at spin barriers, and the
 * weight gradient of each column block is used for its Adam update while it is still in
 * registers, never written out.
 *
 * Layout: layer l has weights W[l] of shape (dims[l], dims[l+1]) (input-major, the transpose of
 * torch.nn.Linear.weight) and bias b[l] of dims[l+1]; Adam moments have the same shapes. Every
 * output column is computed by the same sequence of operations whatever the number of threads, so
 * results do not depend on it.
 *
 * Reading order: threads and barriers; the kernels (forward product, backward through ReLU, weight
 * gradient fused with Adam), each in portable C and AVX2/FMA, chosen at run time; then each network
 * as a struct of named buffers (mlp_buffers, cnn_buffers) whose sizes one table function computes
 * (mlp_table, cnn_table), and a training step as named phases over it: *_forward, step_loss,
 * *_backward, *_update, looped over the batches by *_train_worker on every thread. The exported
 * functions answer 0, DL_ENOMEM or DL_EINVAL; dl_train_bytes/dl_cnn_train_bytes say beforehand how
 * much memory a training call will ask for.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DL_X86 1
#define AVX2 __attribute__((target("avx2,fma")))
#endif

#define DL_MAXL 16
#define DL_MAXT 64

/* --- threads ------------------------------------------------------------------------------- */

typedef struct {
    atomic_int count;
    atomic_int sense;
    int n;
} barrier_t;

static inline void cpu_relax(void) {
#ifdef DL_X86
    _mm_pause();
#endif
}

static void barrier_wait(barrier_t *b, int *local) {
    int s = !*local;
    *local = s;
    if (b->n == 1) return;
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store_explicit(&b->sense, s, memory_order_release);
        return;
    }
    int spins = 0;
    while (atomic_load_explicit(&b->sense, memory_order_acquire) != s) {
        if (++spins < 4000) cpu_relax();
        else sched_yield(); /* the other thread lost its core: stop burning this one */
    }
}

typedef void (*work_fn)(void *ctx, int tid);
typedef struct { work_fn fn; void *ctx; int tid; atomic_int *go; } thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = (thread_arg *)p;
    int go;
    while ((go = atomic_load_explicit(a->go, memory_order_acquire)) == 0) sched_yield();
    if (go > 0) a->fn(a->ctx, a->tid);
    return NULL;
}

/* Run fn(ctx, t) for t in 0..nthreads-1, t = 0 on the calling thread. Nothing runs unless every
 * thread could be started (the workers meet at barriers sized for all of them): returns -1 then. */
static int run_threads(work_fn fn, void *ctx, int nthreads) {
    pthread_t th[DL_MAXT];
    thread_arg args[DL_MAXT];
    atomic_int go;
    atomic_init(&go, 0);
    int started = 1;
    for (; started < nthreads; started++) {
        args[started] = (thread_arg){fn, ctx, started, &go};
        if (pthread_create(&th[started], NULL, thread_main, &args[started]) != 0) break;
    }
    int ok = started == nthreads;
    atomic_store_explicit(&go, ok ? 1 : -1, memory_order_release);
    if (ok) fn(ctx, 0);
    for (int t = 1; t < started; t++) pthread_join(th[t], NULL);
    return ok ? 0 : -1;
}

/* Subnormal floats (below 1.2e-38) are flushed to zero while the kernels run: Adam's moments of
 * weights that see no gradient for a while (the always-blank border pixels) decay into that range,
 * where every operation on them takes a slow microcode path. The effect on the weights is below
 * 1e-38 per step. The caller's own setting is restored afterwards. */
typedef struct { unsigned int csr; } fp_mode;

static fp_mode fast_fp_begin(void) {
    fp_mode m = {0};
#ifdef DL_X86
    m.csr = _mm_getcsr();
    _mm_setcsr(m.csr | 0x8040); /* FTZ | DAZ */
#endif
    return m;
}

static void fast_fp_end(fp_mode m) {
#ifdef DL_X86
    _mm_setcsr(m.csr);
#else
    (void)m;
#endif
}

/* Columns [c0, c1) of n that thread t owns: blocks of 16 so the vector kernels stay whole. */
static void part(int n, int t, int nthreads, int *c0, int *c1) {
    int chunk = (n + nthreads - 1) / nthreads;
    chunk = (chunk + 15) / 16 * 16;
    int a = t * chunk, b = a + chunk;
    *c0 = a < n ? a : n;
    *c1 = b < n ? b : n;
}

/* Rows [r0, r1) of n that thread t owns: blocks of 4. */
static void part4(int n, int t, int nthreads, int *r0, int *r1) {
    int chunk = (n + nthreads - 1) / nthreads;
    chunk = (chunk + 3) / 4 * 4;
    int a = t * chunk, b = a + chunk;
    *r0 = a < n ? a : n;
    *r1 = b < n ? b : n;
}

static int have_avx2(void) {
#ifdef DL_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        if (getenv("DIGITLAB_NATIVE_GENERIC")) cached = 0; /* tests: the portable kernels */
    }
    return cached;
#else
    return 0;
#endif
}

/* --- kernels: out[i, c0:c1] = bias + A[i, :] @ W[:, c0:c1], optional ReLU ---------------------- */

static void fwd_generic(int M, int K, const float *A, int lda, const float *W, int ldw, const float *bias,
                        float *out, int ldo, int c0, int c1, int relu) {
    for (int i = 0; i < M; i++) {
        float *o = out + (size_t)i * ldo;
        for (int j = c0; j < c1; j++) o[j] = bias[j];
        const float *a = A + (size_t)i * lda;
        for (int k = 0; k < K; k++) {
            float ak = a[k];
            const float *w = W + (size_t)k * ldw;
            for (int j = c0; j < c1; j++) o[j] += ak * w[j];
        }
        if (relu)
            for (int j = c0; j < c1; j++) o[j] = o[j] > 0.0f ? o[j] : 0.0f;
    }
}

#ifdef DL_X86
/* One 4x16 block of out over inputs [k0, k1): starts from the bias when k0 == 0 and from the partial
 * sums already in out otherwise, so the sum runs over k in order whatever the blocking. */
AVX2 static inline void fwd_tile4(const float *A, int lda, const float *W, int ldw, const float *bias, float *o,
                                  int ldo, int k0, int k1, int last, int relu) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31;
    if (k0 == 0) {
        c00 = c10 = c20 = c30 = _mm256_loadu_ps(bias);
        c01 = c11 = c21 = c31 = _mm256_loadu_ps(bias + 8);
    } else {
        c00 = _mm256_loadu_ps(o); c01 = _mm256_loadu_ps(o + 8);
        c10 = _mm256_loadu_ps(o + ldo); c11 = _mm256_loadu_ps(o + ldo + 8);
        c20 = _mm256_loadu_ps(o + 2 * ldo); c21 = _mm256_loadu_ps(o + 2 * ldo + 8);
        c30 = _mm256_loadu_ps(o + 3 * ldo); c31 = _mm256_loadu_ps(o + 3 * ldo + 8);
    }
    const float *a0 = A, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
    const float *w = W + (size_t)k0 * ldw;
    for (int k = k0; k < k1; k++, w += ldw) {
        __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
        __m256 x = _mm256_broadcast_ss(a0 + k);
        c00 = _mm256_fmadd_ps(x, w0, c00); c01 = _mm256_fmadd_ps(x, w1, c01);
        x = _mm256_broadcast_ss(a1 + k);
        c10 = _mm256_fmadd_ps(x, w0, c10); c11 = _mm256_fmadd_ps(x, w1, c11);
        x = _mm256_broadcast_ss(a2 + k);
        c20 = _mm256_fmadd_ps(x, w0, c20); c21 = _mm256_fmadd_ps(x, w1, c21);
        x = _mm256_broadcast_ss(a3 + k);
        c30 = _mm256_fmadd_ps(x, w0, c30); c31 = _mm256_fmadd_ps(x, w1, c31);
    }
    if (last && relu) {
        const __m256 zero = _mm256_setzero_ps();
        c00 = _mm256_max_ps(c00, zero); c01 = _mm256_max_ps(c01, zero);
        c10 = _mm256_max_ps(c10, zero); c11 = _mm256_max_ps(c11, zero);
        c20 = _mm256_max_ps(c20, zero); c21 = _mm256_max_ps(c21, zero);
        c30 = _mm256_max_ps(c30, zero); c31 = _mm256_max_ps(c31, zero);
    }
    _mm256_storeu_ps(o, c00); _mm256_storeu_ps(o + 8, c01); o += ldo;
    _mm256_storeu_ps(o, c10); _mm256_storeu_ps(o + 8, c11); o += ldo;
    _mm256_storeu_ps(o, c20); _mm256_storeu_ps(o + 8, c21); o += ldo;
    _mm256_storeu_ps(o, c30); _mm256_storeu_ps(o + 8, c31);
}

#define FWD_KBLOCK 128 /* rows of W per pass: a 16-column strip of them (8 KB) stays in L1 */
#define FWD_MBLOCK 64  /* rows of A per pass (a convolution's im2col has thousands) */

AVX2 static void fwd_avx2(int M, int K, const float *A, int lda, const float *W, int ldw, const float *bias,
                          float *out, int ldo, int c0, int c1, int relu) {
    const __m256 zero = _mm256_setzero_ps();
    int jend = c0 + (c1 - c0) / 16 * 16, mend = M / 4 * 4;
    for (int i0 = 0; i0 < mend; i0 += FWD_MBLOCK) { /* a block of rows of A stays in L2 meanwhile */
        int i1 = i0 + FWD_MBLOCK < mend ? i0 + FWD_MBLOCK : mend;
        for (int k0 = 0; k0 < K || k0 == 0; k0 += FWD_KBLOCK) {
            int k1 = k0 + FWD_KBLOCK < K ? k0 + FWD_KBLOCK : K, last = k1 == K;
            for (int j = c0; j < jend; j += 16)
                for (int i = i0; i < i1; i += 4)
                    fwd_tile4(A + (size_t)i * lda, lda, W + j, ldw, bias + j, out + (size_t)i * ldo + j, ldo, k0,
                              k1, last, relu);
            if (last) break;
        }
    }
    for (int j = c0; j < jend; j += 16) {
        __m256 b0 = _mm256_loadu_ps(bias + j), b1 = _mm256_loadu_ps(bias + j + 8);
        for (int i = mend; i < M; i++) {
            __m256 c0v = b0, c1v = b1;
            const float *a = A + (size_t)i * lda, *w = W + j;
            for (int k = 0; k < K; k++, w += ldw) {
                __m256 x = _mm256_broadcast_ss(a + k);
                c0v = _mm256_fmadd_ps(x, _mm256_loadu_ps(w), c0v);
                c1v = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 8), c1v);
            }
            if (relu) { c0v = _mm256_max_ps(c0v, zero); c1v = _mm256_max_ps(c1v, zero); }
            _mm256_storeu_ps(out + (size_t)i * ldo + j, c0v);
            _mm256_storeu_ps(out + (size_t)i * ldo + j + 8, c1v);
        }
    }
    if (jend < c1) fwd_generic(M, K, A, lda, W, ldw, bias, out, ldo, jend, c1, relu);
}
#endif

static void forward_cols(int M, int K, const float *A, int lda, const float *W, int ldw, const float *bias,
                         float *out, int ldo, int c0, int c1, int relu) {
    if (c1 <= c0 || M <= 0) return;
#ifdef DL_X86
    if (have_avx2()) { fwd_avx2(M, K, A, lda, W, ldw, bias, out, ldo, c0, c1, relu); return; }
#endif
    fwd_generic(M, K, A, lda, W, ldw, bias, out, ldo, c0, c1, relu);
}

/* --- kernels: dA[i, r0:r1] = (dZ[i, :] @ W[r0:r1, :]^T) * (A[i, r0:r1] > 0) (backward through ReLU;
 * no mask when A is NULL) */

static void back_hidden(int M, int N, const float *dZ, int ldz, const float *W, int ldw,
                        const float *H, float *dH, int ldh, int r0, int r1) {
    for (int i = 0; i < M; i++) {
        const float *dz = dZ + (size_t)i * ldz;
        for (int r = r0; r < r1; r++) {
            float s = 0.0f;
            if (!H || H[(size_t)i * ldh + r] > 0.0f) {
                const float *w = W + (size_t)r * ldw;
                for (int j = 0; j < N; j++) s += dz[j] * w[j];
            }
            dH[(size_t)i * ldh + r] = s;
        }
    }
}

#ifdef DL_X86
AVX2 static inline __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                                __m256 a6, __m256 a7) {
    __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 v = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u, v, 0x20), _mm256_permute2f128_ps(u, v, 0x31));
}

/* 8 rows r at a time for one sample i: eight dot products over N (a multiple of 8), summed across
 * lanes at once. The ReLU mask is applied after: the sum is the same, masked or not. */
AVX2 static void back_hidden_avx2(int M, int N, const float *dZ, int ldz, const float *W, int ldw,
                                  const float *H, float *dH, int ldh, int r0, int r1) {
    if (N % 8) { back_hidden(M, N, dZ, ldz, W, ldw, H, dH, ldh, r0, r1); return; }
    int r = r0;
    for (; r + 8 <= r1; r += 8) {
        const float *w = W + (size_t)r * ldw;
        for (int i = 0; i < M; i++) {
            const float *dz = dZ + (size_t)i * ldz;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (int j = 0; j < N; j += 8) {
                __m256 d = _mm256_loadu_ps(dz + j);
                a0 = _mm256_fmadd_ps(d, _mm256_loadu_ps(w + j), a0);
                a1 = _mm256_fmadd_ps(d, _mm256_loadu_ps(w + ldw + j), a1);
                a2 = _mm256_fmadd_ps(d, _mm256_loadu_ps(w + 2 * ldw + j), a2);
                a3 = _mm256_fmadd_ps(d, _mm256_loadu_ps(w + 3 * ldw + j), a3);
                a4 = _mm256_fmadd_ps(d, _mm256_loadu_ps(w + 4 * ldw + j), a4);
                a5 = _mm256_fmadd_ps(d, _mm256_loadu_ps(w + 5 * ldw + j), a5);
                a6 = _mm256_fmadd_ps(d, _mm256_loadu_ps(w + 6 * ldw + j), a6);
                a7 = _mm256_fmadd_ps(d, _mm256_loadu_ps(w + 7 * ldw + j), a7);
            }
            __m256 s = hsum8(a0, a1, a2, a3, a4, a5, a6, a7);
            if (H) {
                __m256 h = _mm256_loadu_ps(H + (size_t)i * ldh + r);
                s = _mm256_and_ps(s, _mm256_cmp_ps(h, _mm256_setzero_ps(), _CMP_GT_OQ));
            }
            _mm256_storeu_ps(dH + (size_t)i * ldh + r, s);
        }
    }
    if (r < r1) back_hidden(M, N, dZ, ldz, W, ldw, H, dH, ldh, r, r1);
}
#endif

static void backward_hidden(int M, int N, const float *dZ, int ldz, const float *W, int ldw,
                            const float *H, float *dH, int ldh, int r0, int r1) {
    if (r1 <= r0) return;
#ifdef DL_X86
    if (have_avx2()) { back_hidden_avx2(M, N, dZ, ldz, W, ldw, H, dH, ldh, r0, r1); return; }
#endif
    back_hidden(M, N, dZ, ldz, W, ldw, H, dH, ldh, r0, r1);
}

/* --- kernels: G = A^T @ dZ for columns [c0, c1), consumed at once by Adam ---------------------- */

typedef struct {
    float lr, b1, b2, eps, wd, step_size, inv_sqrt_bc2;
    int decoupled;
} adam_t;

static inline void adam_scalar(const adam_t *o, float g, float *w, float *m, float *v) {
    float wv = *w;
    if (o->decoupled) wv *= 1.0f - o->lr * o->wd;
    else g += o->wd * wv;
    float mv = *m + (1.0f - o->b1) * (g - *m);
    float vv = o->b2 * *v + (1.0f - o->b2) * g * g;
    *m = mv;
    *v = vv;
    *w = wv - o->step_size * mv / (sqrtf(vv) * o->inv_sqrt_bc2 + o->eps);
}

static void grad_adam_generic(int M, int K, const float *A, int lda, const float *dZ, int ldz, float *W,
                              float *Mo, float *V, int ldw, int c0, int c1, const adam_t *o) {
    for (int k = 0; k < K; k++) {
        for (int j = c0; j < c1; j++) {
            float g = 0.0f;
            for (int i = 0; i < M; i++) g += A[(size_t)i * lda + k] * dZ[(size_t)i * ldz + j];
            size_t at = (size_t)k * ldw + j;
            adam_scalar(o, g, W + at, Mo + at, V + at);
        }
    }
}

#ifdef DL_X86
AVX2 static inline void adam_vec(const adam_t *o, __m256 g, float *w, float *m, float *v) {
    __m256 wv = _mm256_loadu_ps(w), mv = _mm256_loadu_ps(m), vv = _mm256_loadu_ps(v);
    if (o->decoupled) wv = _mm256_mul_ps(wv, _mm256_set1_ps(1.0f - o->lr * o->wd));
    else if (o->wd != 0.0f) g = _mm256_fmadd_ps(_mm256_set1_ps(o->wd), wv, g);
    mv = _mm256_fmadd_ps(_mm256_set1_ps(1.0f - o->b1), _mm256_sub_ps(g, mv), mv);
    vv = _mm256_fmadd_ps(_mm256_set1_ps(1.0f - o->b2), _mm256_mul_ps(g, g), _mm256_mul_ps(_mm256_set1_ps(o->b2), vv));
    __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(vv), _mm256_set1_ps(o->inv_sqrt_bc2), _mm256_set1_ps(o->eps));
    wv = _mm256_sub_ps(wv, _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(o->step_size), mv), den));
    _mm256_storeu_ps(w, wv);
    _mm256_storeu_ps(m, mv);
    _mm256_storeu_ps(v, vv);
}

/* The 4x16 block of a weight gradient: g{r}{h} += A[i, k + r] * dZ[i, j + 8h] for rows i of A and dZ,
 * with a = &A[0, k] and dz = &dZ[0, j] (a macro, so the sixteen sums stay in registers). */
#define GRAD_TILE_4x16(M, a, lda, dz, ldz)                                                              \
    for (int i_ = 0; i_ < (M); i_++, (a) += (lda), (dz) += (ldz)) {                                     \
        __m256 d0_ = _mm256_loadu_ps(dz), d1_ = _mm256_loadu_ps((dz) + 8);                              \
        __m256 x_ = _mm256_broadcast_ss(a);                                                              \
        g00 = _mm256_fmadd_ps(x_, d0_, g00); g01 = _mm256_fmadd_ps(x_, d1_, g01);                       \
        x_ = _mm256_broadcast_ss((a) + 1);                                                               \
        g10 = _mm256_fmadd_ps(x_, d0_, g10); g11 = _mm256_fmadd_ps(x_, d1_, g11);                       \
        x_ = _mm256_broadcast_ss((a) + 2);                                                               \
        g20 = _mm256_fmadd_ps(x_, d0_, g20); g21 = _mm256_fmadd_ps(x_, d1_, g21);                       \
        x_ = _mm256_broadcast_ss((a) + 3);                                                               \
        g30 = _mm256_fmadd_ps(x_, d0_, g30); g31 = _mm256_fmadd_ps(x_, d1_, g31);                       \
    }

AVX2 static void grad_adam_avx2(int M, int K, const float *A, int lda, const float *dZ, int ldz, float *W,
                                float *Mo, float *V, int ldw, int c0, int c1, const adam_t *o) {
    /* rows of W outermost, so W, m and v stream through memory in order */
    int jend = c0 + (c1 - c0) / 16 * 16;
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        for (int j = c0; j < jend; j += 16) {
            __m256 g00 = _mm256_setzero_ps(), g01 = g00, g10 = g00, g11 = g00, g20 = g00, g21 = g00,
                   g30 = g00, g31 = g00;
            const float *a = A + k, *dz = dZ + j;
            GRAD_TILE_4x16(M, a, lda, dz, ldz);
            size_t at = (size_t)k * ldw + j;
            adam_vec(o, g00, W + at, Mo + at, V + at); adam_vec(o, g01, W + at + 8, Mo + at + 8, V + at + 8);
            at += ldw;
            adam_vec(o, g10, W + at, Mo + at, V + at); adam_vec(o, g11, W + at + 8, Mo + at + 8, V + at + 8);
            at += ldw;
            adam_vec(o, g20, W + at, Mo + at, V + at); adam_vec(o, g21, W + at + 8, Mo + at + 8, V + at + 8);
            at += ldw;
            adam_vec(o, g30, W + at, Mo + at, V + at); adam_vec(o, g31, W + at + 8, Mo + at + 8, V + at + 8);
        }
    }
    for (; k < K; k++) {
        for (int j = c0; j < jend; j += 16) {
            __m256 g0 = _mm256_setzero_ps(), g1 = g0;
            const float *a = A + k, *dz = dZ + j;
            for (int i = 0; i < M; i++, a += lda, dz += ldz) {
                __m256 x = _mm256_broadcast_ss(a);
                g0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(dz), g0);
                g1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(dz + 8), g1);
            }
            size_t at = (size_t)k * ldw + j;
            adam_vec(o, g0, W + at, Mo + at, V + at); adam_vec(o, g1, W + at + 8, Mo + at + 8, V + at + 8);
        }
    }
    if (jend < c1) grad_adam_generic(M, K, A, lda, dZ, ldz, W, Mo, V, ldw, jend, c1, o);
}
#endif

/* G[0:K, c0:c1] (+)= A[0:M, 0:K]^T @ dZ[0:M, c0:c1]: the weight gradient of a convolution, whose
 * im2col matrix A has thousands of rows; the caller feeds it a block of rows at a time (so that
 * block of A stays in cache for every column block) and keeps the running sums in G. */
static void grad_acc_generic(int M, int K, const float *A, int lda, const float *dZ, int ldz, float *G, int ldg,
                             int c0, int c1, int init) {
    for (int k = 0; k < K; k++)
        for (int j = c0; j < c1; j++) {
            float g = init ? 0.0f : G[(size_t)k * ldg + j];
            for (int i = 0; i < M; i++) g += A[(size_t)i * lda + k] * dZ[(size_t)i * ldz + j];
            G[(size_t)k * ldg + j] = g;
        }
}

#ifdef DL_X86
AVX2 static void grad_acc_avx2(int M, int K, const float *A, int lda, const float *dZ, int ldz, float *G, int ldg,
                               int c0, int c1, int init) {
    int jend = c0 + (c1 - c0) / 16 * 16, kend = K / 4 * 4;
    for (int k = 0; k < kend; k += 4) {
        for (int j = c0; j < jend; j += 16) {
            float *g = G + (size_t)k * ldg + j;
            __m256 g00, g01, g10, g11, g20, g21, g30, g31;
            if (init) {
                g00 = g01 = g10 = g11 = g20 = g21 = g30 = g31 = _mm256_setzero_ps();
            } else {
                g00 = _mm256_loadu_ps(g); g01 = _mm256_loadu_ps(g + 8);
                g10 = _mm256_loadu_ps(g + ldg); g11 = _mm256_loadu_ps(g + ldg + 8);
                g20 = _mm256_loadu_ps(g + 2 * ldg); g21 = _mm256_loadu_ps(g + 2 * ldg + 8);
                g30 = _mm256_loadu_ps(g + 3 * ldg); g31 = _mm256_loadu_ps(g + 3 * ldg + 8);
            }
            const float *a = A + k, *dz = dZ + j;
            GRAD_TILE_4x16(M, a, lda, dz, ldz);
            _mm256_storeu_ps(g, g00); _mm256_storeu_ps(g + 8, g01);
            _mm256_storeu_ps(g + ldg, g10); _mm256_storeu_ps(g + ldg + 8, g11);
            _mm256_storeu_ps(g + 2 * ldg, g20); _mm256_storeu_ps(g + 2 * ldg + 8, g21);
            _mm256_storeu_ps(g + 3 * ldg, g30); _mm256_storeu_ps(g + 3 * ldg + 8, g31);
        }
    }
    for (int k = kend; k < K; k++) {
        for (int j = c0; j < jend; j += 16) {
            float *g = G + (size_t)k * ldg + j;
            __m256 g0 = init ? _mm256_setzero_ps() : _mm256_loadu_ps(g);
            __m256 g1 = init ? _mm256_setzero_ps() : _mm256_loadu_ps(g + 8);
            const float *a = A + k, *dz = dZ + j;
            for (int i = 0; i < M; i++, a += lda, dz += ldz) {
                __m256 x = _mm256_broadcast_ss(a);
                g0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(dz), g0);
                g1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(dz + 8), g1);
            }
            _mm256_storeu_ps(g, g0);
            _mm256_storeu_ps(g + 8, g1);
        }
    }
    if (jend < c1) grad_acc_generic(M, K, A, lda, dZ, ldz, G, ldg, jend, c1, init);
}
#endif

static void grad_acc(int M, int K, const float *A, int lda, const float *dZ, int ldz, float *G, int ldg, int c0,
                     int c1, int init) {
    if (c1 <= c0 || K <= 0) return;
#ifdef DL_X86
    if (have_avx2()) { grad_acc_avx2(M, K, A, lda, dZ, ldz, G, ldg, c0, c1, init); return; }
#endif
    grad_acc_generic(M, K, A, lda, dZ, ldz, G, ldg, c0, c1, init);
}

static void grad_adam(int M, int K, const float *A, int lda, const float *dZ, int ldz, float *W, float *Mo,
                      float *V, int ldw, int c0, int c1, const adam_t *o) {
    if (c1 <= c0) return;
#ifdef DL_X86
    if (have_avx2()) { grad_adam_avx2(M, K, A, lda, dZ, ldz, W, Mo, V, ldw, c0, c1, o); return; }
#endif
    grad_adam_generic(M, K, A, lda, dZ, ldz, W, Mo, V, ldw, c0, c1, o);
}

/* Adam on W[k0:k1, c0:c1] from the gradients already summed in G (same layout as W). */
static void adam_block_generic(const float *G, float *W, float *Mo, float *V, int ld, int k0, int k1, int c0, int c1,
                               const adam_t *o) {
    for (int k = k0; k < k1; k++)
        for (int j = c0; j < c1; j++) {
            size_t at = (size_t)k * ld + j;
            adam_scalar(o, G[at], W + at, Mo + at, V + at);
        }
}

#ifdef DL_X86
AVX2 static void adam_block_avx2(const float *G, float *W, float *Mo, float *V, int ld, int k0, int k1, int c0,
                                 int c1, const adam_t *o) {
    int jend = c0 + (c1 - c0) / 8 * 8;
    for (int k = k0; k < k1; k++) {
        size_t row = (size_t)k * ld;
        for (int j = c0; j < jend; j += 8)
            adam_vec(o, _mm256_loadu_ps(G + row + j), W + row + j, Mo + row + j, V + row + j);
    }
    if (jend < c1) adam_block_generic(G, W, Mo, V, ld, k0, k1, jend, c1, o);
}
#endif

static void adam_block(const float *G, float *W, float *Mo, float *V, int ld, int k0, int k1, int c0, int c1,
                       const adam_t *o) {
#ifdef DL_X86
    if (have_avx2()) { adam_block_avx2(G, W, Mo, V, ld, k0, k1, c0, c1, o); return; }
#endif
    adam_block_generic(G, W, Mo, V, ld, k0, k1, c0, c1, o);
}

/* Softmax cross-entropy on logits row by row: returns the summed loss, counts correct argmaxes,
 * and (when dZ is given) writes (softmax - onehot) * scale. */
static double softmax_xent(int M, int N, const float *Z, const int64_t *y, float *dZ, float scale,
                           float *probs, int64_t *correct) {
    double loss = 0.0;
    int64_t ok = 0;
    for (int i = 0; i < M; i++) {
        const float *z = Z + (size_t)i * N;
        int arg = 0;
        float mx = z[0];
        for (int j = 1; j < N; j++)
            if (z[j] > mx) { mx = z[j]; arg = j; }
        float sum = 0.0f;
        for (int j = 0; j < N; j++) sum += expf(z[j] - mx);
        float lse = mx + logf(sum);
        if (y) {
            loss += (double)(lse - z[y[i]]);
            ok += arg == y[i];
        }
        if (dZ) {
            float *d = dZ + (size_t)i * N;
            for (int j = 0; j < N; j++) d[j] = (expf(z[j] - lse) - (y && j == y[i] ? 1.0f : 0.0f)) * scale;
        }
        if (probs) {
            float *p = probs + (size_t)i * N;
            for (int j = 0; j < N; j++) p[j] = expf(z[j] - lse);
        }
    }
    *correct += ok;
    return loss;
}

/* Pixels to floats: x / 255 in float32, exactly numpy's uint8 -> float32 division. */
static void scale_row(const uint8_t *src, float *dst, int d) {
    for (int k = 0; k < d; k++) dst[k] = (float)src[k] / 255.0f;
}

#ifdef DL_X86
AVX2 static void scale_row_avx2(const uint8_t *src, float *dst, int d) {
    const __m256 div = _mm256_set1_ps(255.0f);
    int k = 0;
    for (; k + 8 <= d; k += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(src + k));
        _mm256_storeu_ps(dst + k, _mm256_div_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), div));
    }
    scale_row(src + k, dst + k, d - k);
}
#endif

static void to_float_rows(const uint8_t *X, const int64_t *rows, int64_t first, int count, int d, float *out,
                          int t, int nthreads) {
    for (int i = t; i < count; i += nthreads) {
        const uint8_t *src = X + (size_t)rows[first + i] * d;
        float *dst = out + (size_t)i * d;
#ifdef DL_X86
        if (have_avx2()) { scale_row_avx2(src, dst, d); continue; }
#endif
        scale_row(src, dst, d);
    }
}

/* Ask for the next batch's pixel rows now, so they are in cache when the step after needs them. */
static void prefetch_rows(const uint8_t *X, const int64_t *rows, int64_t first, int64_t n, int count, int d, int t,
                          int nthreads) {
#if defined(__GNUC__)
    for (int i = t; i < count && first + i < n; i += nthreads) {
        const uint8_t *src = X + (size_t)rows[first + i] * d;
        for (int k = 0; k < d; k += 64) __builtin_prefetch(src + k, 0, 1);
    }
#else
    (void)X; (void)rows; (void)first; (void)n; (void)count; (void)d; (void)t; (void)nthreads;
#endif
}

/* --- training ------------------------------------------------------------------------------ */

/* What a training call asks for, whatever the network: parameters, Adam state, data, outputs. */
typedef struct {
    int L, nthreads, batch;
    const int *dims;
    float **W, **b, **mW, **vW, **mb, **vb;
    const uint8_t *X;
    const int64_t *y, *idx;
    int64_t n, t0;
    const float *lr;
    float b1, b2, eps, wd;
    int decoupled;
    double *loss_out;
    int64_t *correct_out;
} train_job;

/* Adam's settings for step s of a job (bias corrections for its global step number). */
static adam_t adam_for_step(const train_job *j, int64_t s) {
    int64_t step = j->t0 + s + 1;
    float lr = j->lr[s];
    double bc1 = 1.0 - pow(j->b1, (double)step), bc2 = 1.0 - pow(j->b2, (double)step);
    adam_t o = {lr, j->b1, j->b2, j->eps, j->wd, (float)(lr / bc1), (float)(1.0 / sqrt(bc2)), j->decoupled};
    return o;
}

/* The job described by the arguments of dl_train and dl_cnn_train (the same for both). */
#define JOB_FROM_ARGS                                                                                       \
    {.L = L, .nthreads = nthreads < 1 ? 1 : nthreads > DL_MAXT ? DL_MAXT : nthreads, .batch = batch,       \
     .dims = dims, .W = W, .b = b, .mW = mW, .vW = vW, .mb = mb, .vb = vb, .X = X, .y = y, .idx = idx, .n = n, \
     .t0 = t0, .lr = lr, .b1 = beta1, .b2 = beta2, .eps = eps, .wd = weight_decay, .decoupled = decoupled,   \
     .loss_out = loss_out, .correct_out = correct_out}

/* Runs a training worker on every thread, or on this one alone if threads cannot be had. */
static int run_training(work_fn worker, void *ctx, train_job *j, barrier_t *bar) {
    atomic_init(&bar->count, 0);
    atomic_init(&bar->sense, 0);
    bar->n = j->nthreads;
    if (run_threads(worker, ctx, j->nthreads) == 0) return 0;
    j->nthreads = bar->n = 1;
    return run_threads(worker, ctx, 1);
}

/* What the library's functions answer: 0, or one of these (the Python side turns them into errors). */
#define DL_ENOMEM (-1) /* a buffer could not be allocated */
#define DL_EINVAL (-2) /* the arguments describe a network or a batch the kernels cannot run */

/* --- tables of named buffers ---------------------------------------------------------------
 *
 * Each network keeps the buffers of a training step in a struct with one named field per buffer.
 * Its table function lists every field with its size, and that list is the one place sizes are
 * computed: the training call allocates from it and dl_*_train_bytes reports the memory it needs. */

typedef struct {
    void **at;    /* the field that points at the buffer */
    size_t bytes; /* its size */
} buffer;

#define BUFFER(field, count) ((buffer){(void **)&(field), (size_t)(count) * sizeof(*(field))})
#define BUF_ALIGN 64

static size_t table_bytes(const buffer *table, int n) {
    size_t total = 0;
    for (int k = 0; k < n; k++) total += (table[k].bytes + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN;
    return total;
}

/* One aligned block for every buffer of the table, each field pointed at its part; NULL when short. */
static void *table_alloc(const buffer *table, int n) {
    size_t total = table_bytes(table, n);
    char *mem = (char *)aligned_alloc(BUF_ALIGN, total ? total : BUF_ALIGN);
    if (!mem) return NULL;
    char *q = mem;
    for (int k = 0; k < n; k++) {
        *table[k].at = q;
        q += (table[k].bytes + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN;
    }
    return mem;
}

/* The loss of step s (thread 0 alone): the batch's labels, the summed loss and correct count into the
 * job's outputs, and d loss / d logits (the mean over the batch) into dlogits. */
static void step_loss(const train_job *j, int64_t s, int64_t first, int bs, int nc, const float *logits,
                      float *dlogits, int64_t *yb) {
    for (int i = 0; i < bs; i++) yb[i] = j->y[j->idx[first + i]];
    int64_t ok = 0;
    j->loss_out[s] = softmax_xent(bs, nc, logits, yb, dlogits, 1.0f / (float)bs, NULL, &ok);
    j->correct_out[s] = ok;
}

/* --- the MLP ------------------------------------------------------------------------------- */

typedef struct {
    float *x[2];       /* B x dims[0], twice: step s reads x[s & 1] while the next batch is gathered */
    float *H[DL_MAXL];  /* B x dims[l+1]: layer l's output (ReLU but for the logits) */
    float *dZ[DL_MAXL]; /* B x dims[l+1]: d loss / d layer l's output before its ReLU */
    int64_t *y;        /* B: the batch's labels */
} mlp_buffers;

#define MLP_MAX_BUFFERS (3 + 2 * DL_MAXL)

#define MLP_MAX_VALUES ((int64_t)1 << 40) /* per buffer: far past any memory, and no size_t overflow */

static int mlp_check(int L, const int *dims, int batch) {
    if (L < 1 || L > DL_MAXL || batch < 1) return DL_EINVAL;
    for (int l = 0; l <= L; l++)
        if (dims[l] < 1 || (int64_t)batch * dims[l] > MLP_MAX_VALUES) return DL_EINVAL;
    return 0;
}

static int mlp_table(mlp_buffers *b, int L, const int *dims, size_t B, buffer *table) {
    int n = 0;
    table[n++] = BUFFER(b->x[0], B * dims[0]);
    table[n++] = BUFFER(b->x[1], B * dims[0]);
    for (int l = 0; l < L; l++) {
        table[n++] = BUFFER(b->H[l], B * dims[l + 1]);
        table[n++] = BUFFER(b->dZ[l], B * dims[l + 1]);
    }
    table[n++] = BUFFER(b->y, B);
    return n;
}

typedef struct {
    train_job j;
    mlp_buffers b;
    barrier_t bar;
} mlp_ctx;

/* Layer by layer, each thread computing its block of output columns. */
static void mlp_forward(mlp_ctx *c, const float *x, int bs, int t, int *sense) {
    const int L = c->j.L, T = c->j.nthreads;
    const int *dims = c->j.dims;
    const float *A = x;
    for (int l = 0; l < L; l++) {
        int c0, c1;
        part(dims[l + 1], t, T, &c0, &c1);
        forward_cols(bs, dims[l], A, dims[l], c->j.W[l], dims[l + 1], c->j.b[l], c->b.H[l], dims[l + 1], c0, c1,
                     l < L - 1);
        barrier_wait(&c->bar, sense);
        A = c->b.H[l];
    }
}

/* Gradients with respect to each hidden layer's output (through its ReLU), last layer first. */
static void mlp_backward(mlp_ctx *c, int bs, int t, int *sense) {
    const int L = c->j.L, T = c->j.nthreads;
    const int *dims = c->j.dims;
    for (int l = L - 1; l >= 1; l--) {
        int r0, r1;
        part(dims[l], t, T, &r0, &r1);
        backward_hidden(bs, dims[l + 1], c->b.dZ[l], dims[l + 1], c->j.W[l], dims[l + 1], c->b.H[l - 1],
                        c->b.dZ[l - 1], dims[l], r0, r1);
        barrier_wait(&c->bar, sense);
    }
}

/* Weight gradients fused with Adam: kernels by input rows, so each thread streams one contiguous
 * block of W, m and v; biases by columns. */
static void mlp_update(mlp_ctx *c, const float *x, int bs, const adam_t *o, int t) {
    const int L = c->j.L, T = c->j.nthreads;
    for (int l = 0; l < L; l++) {
        int k0, k1, c0, c1, din = c->j.dims[l], dout = c->j.dims[l + 1];
        part4(din, t, T, &k0, &k1);
        const float *A = l == 0 ? x : c->b.H[l - 1];
        size_t at = (size_t)k0 * dout;
        grad_adam(bs, k1 - k0, A + k0, din, c->b.dZ[l], dout, c->j.W[l] + at, c->j.mW[l] + at, c->j.vW[l] + at, dout,
                  0, dout, o);
        part(dout, t, T, &c0, &c1);
        for (int j = c0; j < c1; j++) {
            float g = 0.0f;
            for (int i = 0; i < bs; i++) g += c->b.dZ[l][(size_t)i * dout + j];
            adam_scalar(o, g, c->j.b[l] + j, c->j.mb[l] + j, c->j.vb[l] + j);
        }
    }
}

static void mlp_train_worker(void *p, int t) {
    fp_mode fp = fast_fp_begin();
    mlp_ctx *c = (mlp_ctx *)p;
    const int L = c->j.L, T = c->j.nthreads, B = c->j.batch, d0 = c->j.dims[0];
    int sense = 0;
    int64_t steps = (c->j.n + B - 1) / B;
    for (int64_t s = 0; s < steps; s++) {
        int64_t first = s * B;
        int bs = (int)(c->j.n - first < B ? c->j.n - first : B);
        float *x = c->b.x[s & 1];
        to_float_rows(c->j.X, c->j.idx, first, bs, d0, x, t, T);
        barrier_wait(&c->bar, &sense);
        if (s + 1 < steps) prefetch_rows(c->j.X, c->j.idx, first + B, c->j.n, B, d0, t, T); /* the next batch */
        mlp_forward(c, x, bs, t, &sense);
        if (t == 0) step_loss(&c->j, s, first, bs, c->j.dims[L], c->b.H[L - 1], c->b.dZ[L - 1], c->b.y);
        barrier_wait(&c->bar, &sense);
        mlp_backward(c, bs, t, &sense);
        adam_t o = adam_for_step(&c->j, s);
        mlp_update(c, x, bs, &o, t);
    }
    fast_fp_end(fp);
}

/* Train on the samples idx[0:n] in order, `batch` at a time (the last batch may be smaller).
 * lr[s] is the learning rate of step s; t0 the number of Adam steps already taken.
 * Writes the summed loss and the number of correct predictions of each step.
 * Returns 0, DL_EINVAL or DL_ENOMEM. */
int dl_train(int L, const int *dims, float **W, float **b, float **mW, float **vW, float **mb, float **vb,
             const uint8_t *X, const int64_t *y, const int64_t *idx, int64_t n, int batch, const float *lr,
             int64_t t0, float beta1, float beta2, float eps, float weight_decay, int decoupled,
             double *loss_out, int64_t *correct_out, int nthreads) {
    if (mlp_check(L, dims, batch) || n < 0) return DL_EINVAL;
    mlp_ctx c = {.j = JOB_FROM_ARGS};
    buffer table[MLP_MAX_BUFFERS];
    int nb = mlp_table(&c.b, L, dims, (size_t)batch, table);
    void *mem = table_alloc(table, nb);
    if (!mem) return DL_ENOMEM;
    int rc = run_training(mlp_train_worker, &c, &c.j, &c.bar);
    free(mem);
    return rc;
}

/* The bytes of buffers dl_train allocates for this network and batch (beside the caller's
 * parameters and Adam moments), or DL_EINVAL. */
int64_t dl_train_bytes(int L, const int *dims, int batch) {
    if (mlp_check(L, dims, batch)) return DL_EINVAL;
    mlp_buffers b;
    buffer table[MLP_MAX_BUFFERS];
    return (int64_t)table_bytes(table, mlp_table(&b, L, dims, (size_t)batch, table));
}

/* --- inference ----------------------------------------------------------------------------- */

typedef struct {
    int L, nthreads;
    const int *dims;
    float **W, **b;
    const uint8_t *X;
    const int64_t *y;
    int64_t n;
    float *probs;
    double loss[DL_MAXT];
    int64_t correct[DL_MAXT];
    int failed[DL_MAXT];
} eval_ctx;

#define EVAL_BLOCK 64

static void eval_worker(void *p, int t) {
    fp_mode fp = fast_fp_begin();
    eval_ctx *c = (eval_ctx *)p;
    const int L = c->L, d0 = c->dims[0], nc = c->dims[L];
    int widest = d0;
    for (int l = 1; l <= L; l++) widest = c->dims[l] > widest ? c->dims[l] : widest;
    float *buf = (float *)malloc(sizeof(float) * EVAL_BLOCK * (size_t)widest * 2);
    int64_t *rows = (int64_t *)malloc(sizeof(int64_t) * EVAL_BLOCK);
    c->loss[t] = 0.0;
    c->correct[t] = 0;
    c->failed[t] = !buf || !rows;
    if (c->failed[t]) { free(buf); free(rows); fast_fp_end(fp); return; }
    int64_t nblocks = (c->n + EVAL_BLOCK - 1) / EVAL_BLOCK;
    for (int64_t blk = t; blk < nblocks; blk += c->nthreads) {
        int64_t first = blk * EVAL_BLOCK;
        int m = (int)(c->n - first < EVAL_BLOCK ? c->n - first : EVAL_BLOCK);
        for (int i = 0; i < m; i++) rows[i] = first + i;
        float *in = buf, *out = buf + (size_t)EVAL_BLOCK * widest;
        to_float_rows(c->X, rows, 0, m, d0, in, 0, 1);
        for (int l = 0; l < L; l++) {
            forward_cols(m, c->dims[l], in, c->dims[l], c->W[l], c->dims[l + 1], c->b[l], out, c->dims[l + 1], 0,
                         c->dims[l + 1], l < L - 1);
            float *tmp = in; in = out; out = tmp;
        }
        c->loss[t] += softmax_xent(m, nc, in, c->y ? c->y + first : NULL, NULL, 1.0f,
                                   c->probs ? c->probs + (size_t)first * nc : NULL, &c->correct[t]);
    }
    free(buf);
    free(rows);
    fast_fp_end(fp);
}

/* Runs an inference worker on every thread (one if threads cannot be had) and adds up its results. */
static int run_eval(work_fn worker, eval_ctx *c, double *loss_out, int64_t *correct_out) {
    if (run_threads(worker, c, c->nthreads) != 0) {
        c->nthreads = 1;
        run_threads(worker, c, 1);
    }
    double loss = 0.0;
    int64_t ok = 0;
    for (int t = 0; t < c->nthreads; t++) {
        if (c->failed[t]) return DL_ENOMEM;
        loss += c->loss[t];
        ok += c->correct[t];
    }
    *loss_out = loss;
    *correct_out = ok;
    return 0;
}

/* Forward X[0:n] (uint8 rows of dims[0] pixels): summed loss and correct count when labels y are
 * given, probabilities into probs (n x dims[L]) when it is not NULL. Returns 0, DL_EINVAL or DL_ENOMEM. */
int dl_evaluate(int L, const int *dims, float **W, float **b, const uint8_t *X, const int64_t *y, int64_t n,
                float *probs, double *loss_out, int64_t *correct_out, int nthreads) {
    if (mlp_check(L, dims, 1) || n < 0) return DL_EINVAL;
    eval_ctx c = {.L = L, .nthreads = nthreads < 1 ? 1 : nthreads > DL_MAXT ? DL_MAXT : nthreads, .dims = dims,
                  .W = W, .b = b, .X = X, .y = y, .n = n, .probs = probs};
    return run_eval(eval_worker, &c, loss_out, correct_out);
}

/* --- the tutorial's CNN ----------------------------------------------------------------------
 *
 * Conv(c1, 3x3) -> MaxPool 2 -> ReLU -> Conv(c2, 3x3) -> MaxPool 2 -> ReLU -> Flatten -> Dense(h, ReLU)
 * -> Dense(classes), on 28x28 images. Activations are channels-last (NHWC); a 3x3 convolution is
 * an im2col gather and a matrix product with kernels stored (kh, kw, c_in) x c_out, so the same
 * kernels as the MLP's do the work: forward, weight gradients fused with Adam, input gradients.
 * ReLU after a 2x2 max-pool is the same function as before it, on a quarter of the values.
 * dims = {784, c1, c2, h, classes}; W[0..3] = conv1 (9 x c1), conv2 (9 c1 x c2),
 * dense (25 c2 x h, rows in (y, x, c) order), dense_1 (h x classes). */

#define CNN_H0 28
#define CNN_H1 26 /* conv1 output */
#define CNN_P1 13 /* after pooling */
#define CNN_H2 11 /* conv2 output */
#define CNN_P2 5
#define GRAD_MBLOCK 256 /* im2col rows per pass of a convolution's weight gradient */

/* Rows of the 3x3 im2col matrix of one sample: (H-2)(W-2) rows of 9C values in (ky, kx, c) order. */
static void im2col3(const float *in, int H, int W, int C, float *col) {
    int Ho = H - 2, Wo = W - 2;
    for (int y = 0; y < Ho; y++)
        for (int x = 0; x < Wo; x++) {
            float *row = col + (size_t)(y * Wo + x) * 9 * C;
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    memcpy(row + (ky * 3 + kx) * C, in + (size_t)((y + ky) * W + x + kx) * C, sizeof(float) * C);
        }
}

/* The adjoint of im2col3: adds each row's gradient back onto the pixels it came from (din zeroed here). */
static void col2im3(const float *col, int H, int W, int C, float *din) {
    int Ho = H - 2, Wo = W - 2;
    memset(din, 0, sizeof(float) * (size_t)H * W * C);
    for (int y = 0; y < Ho; y++)
        for (int x = 0; x < Wo; x++) {
            const float *row = col + (size_t)(y * Wo + x) * 9 * C;
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    float *d = din + (size_t)((y + ky) * W + x + kx) * C;
                    const float *r = row + (ky * 3 + kx) * C;
                    for (int c = 0; c < C; c++) d[c] += r[c];
                }
        }
}

/* 2x2 max-pool (floor) then ReLU, NHWC; arg records which of the window's four won (the first
 * maximum in scan order, as PyTorch picks it). */
static void pool_relu(const float *in, int H, int W, int C, float *out, uint8_t *arg) {
    int Ho = H / 2, Wo = W / 2;
    for (int y = 0; y < Ho; y++)
        for (int x = 0; x < Wo; x++) {
            const float *p0 = in + (size_t)((2 * y) * W + 2 * x) * C, *p1 = p0 + C, *p2 = p0 + (size_t)W * C,
                        *p3 = p2 + C;
            float *o = out + (size_t)(y * Wo + x) * C;
            uint8_t *a = arg + (size_t)(y * Wo + x) * C;
            for (int c = 0; c < C; c++) {
                float m = p0[c];
                uint8_t k = 0;
                if (p1[c] > m) { m = p1[c]; k = 1; }
                if (p2[c] > m) { m = p2[c]; k = 2; }
                if (p3[c] > m) { m = p3[c]; k = 3; }
                o[c] = m > 0.0f ? m : 0.0f;
                a[c] = k;
            }
        }
}

/* Backward of pool_relu: the gradient of each positive output goes to the input that won. */
static void pool_relu_back(const float *dout, const float *out, const uint8_t *arg, int H, int W, int C,
                           float *din) {
    int Ho = H / 2, Wo = W / 2;
    memset(din, 0, sizeof(float) * (size_t)H * W * C);
    for (int y = 0; y < Ho; y++)
        for (int x = 0; x < Wo; x++) {
            size_t at = (size_t)(y * Wo + x) * C;
            for (int c = 0; c < C; c++) {
                if (!(out[at + c] > 0.0f)) continue;
                int k = arg[at + c];
                int yy = 2 * y + (k >> 1), xx = 2 * x + (k & 1);
                din[(size_t)(yy * W + xx) * C + c] = dout[at + c];
            }
        }
}

/* Column sums of dZ[0:M, c0:c1] (bias gradients), summed over rows in order. */
static void col_sums(int M, const float *dZ, int ldz, int c0, int c1, float *out) {
    for (int j = c0; j < c1; j++) out[j] = 0.0f;
    for (int i = 0; i < M; i++) {
        const float *d = dZ + (size_t)i * ldz;
        for (int j = c0; j < c1; j++) out[j] += d[j];
    }
}

/* The network's sizes, from dims = {784, c1, c2, h, classes}. */
typedef struct {
    int C1, C2, D, NC; /* conv1 and conv2 channels, dense units, classes */
    int R1, Q1;        /* conv1's output pixels (26 x 26), after pooling (13 x 13) */
    int R2, F;         /* conv2's output pixels (11 x 11); features after pooling and flattening (5 x 5 x c2) */
    int K1, K2;        /* im2col row widths: 3 x 3 x 1 and 3 x 3 x c1 */
} cnn_shape;

static cnn_shape cnn_shape_of(const int *dims) {
    return (cnn_shape){.C1 = dims[1], .C2 = dims[2], .D = dims[3], .NC = dims[4], .R1 = CNN_H1 * CNN_H1,
                       .Q1 = CNN_P1 * CNN_P1, .R2 = CNN_H2 * CNN_H2, .F = CNN_P2 * CNN_P2 * dims[2], .K1 = 9,
                       .K2 = 9 * dims[1]};
}

#define CNN_MAX_DIM (1 << 20)

/* A batch's im2col row count must fit the kernels' int sizes. */
static int cnn_check(int L, const int *dims, int batch) {
    if (L != 4 || dims[0] != CNN_H0 * CNN_H0 || batch < 1 || (int64_t)batch * CNN_H1 * CNN_H1 > INT32_MAX)
        return DL_EINVAL;
    for (int l = 1; l <= 4; l++)
        if (dims[l] < 1 || dims[l] > CNN_MAX_DIM) return DL_EINVAL;
    return 0;
}

/* Every buffer of a training step, for a batch of B; activations are channels-last. The forward
 * pass uses the first CNN_FORWARD_BUFFERS alone (inference allocates those only). */
typedef struct {
    /* forward */
    float *x;      /* B x 784: the pixels / 255 */
    float *col1;   /* B*R1 x K1: conv1's im2col rows */
    float *z1;     /* B*R1 x C1: conv1's output */
    uint8_t *arg1; /* B*Q1 x C1: which input of each pooling window won */
    float *p1;     /* B*Q1 x C1: pooled, ReLU */
    float *col2;   /* B*R2 x K2: conv2's im2col rows */
    float *z2;     /* B*R2 x C2: conv2's output */
    uint8_t *arg2; /* B x F */
    float *p2;     /* B x F: pooled, ReLU, flattened in (y, x, c) order */
    float *h3;     /* B x D: the dense layer's output, ReLU */
    float *z4;     /* B x NC: the logits */
    /* loss and backward: d loss / d each of the above */
    int64_t *y;    /* B: the batch's labels */
    float *dz4;    /* B x NC */
    float *dh3;    /* B x D */
    float *dp2;    /* B x F */
    float *dz2;    /* B*R2 x C2 */
    float *dcol2;  /* B*R2 x K2 */
    float *dp1;    /* B*Q1 x C1 */
    float *dz1;    /* B*R1 x C1 */
    float *w2t;    /* C2 x K2: conv2's kernel transposed, for its input gradient as a forward product */
    float *zero;   /* K2 zeros: that product's bias */
    /* update */
    float *g1;     /* K1 x C1: conv1's weight gradient */
    float *g2;     /* K2 x C2: conv2's weight gradient */
    float *gb;     /* C1 + C2 + D + NC: the bias gradients, a slice per layer */
} cnn_buffers;

#define CNN_FORWARD_BUFFERS 11
#define CNN_BUFFERS 24

static int cnn_table(cnn_buffers *b, const cnn_shape *s, size_t B, buffer table[CNN_BUFFERS]) {
    const size_t R1 = s->R1, Q1 = s->Q1, R2 = s->R2, F = s->F, K1 = s->K1, K2 = s->K2, C1 = s->C1, C2 = s->C2,
                 D = s->D, NC = s->NC;
    buffer t[CNN_BUFFERS] = {
        BUFFER(b->x, B * CNN_H0 * CNN_H0), BUFFER(b->col1, B * R1 * K1), BUFFER(b->z1, B * R1 * C1),
        BUFFER(b->arg1, B * Q1 * C1),      BUFFER(b->p1, B * Q1 * C1),   BUFFER(b->col2, B * R2 * K2),
        BUFFER(b->z2, B * R2 * C2),        BUFFER(b->arg2, B * F),       BUFFER(b->p2, B * F),
        BUFFER(b->h3, B * D),              BUFFER(b->z4, B * NC),

        BUFFER(b->y, B),                   BUFFER(b->dz4, B * NC),       BUFFER(b->dh3, B * D),
        BUFFER(b->dp2, B * F),             BUFFER(b->dz2, B * R2 * C2),  BUFFER(b->dcol2, B * R2 * K2),
        BUFFER(b->dp1, B * Q1 * C1),       BUFFER(b->dz1, B * R1 * C1),  BUFFER(b->w2t, C2 * K2),
        BUFFER(b->zero, K2),

        BUFFER(b->g1, K1 * C1),            BUFFER(b->g2, K2 * C2),       BUFFER(b->gb, C1 + C2 + D + NC),
    };
    memcpy(table, t, sizeof(t));
    return CNN_BUFFERS;
}

/* The network's parameters (and, for training, Adam's moments and the step's other inputs). */
typedef struct {
    train_job j;
    cnn_shape s;
    cnn_buffers b;
    barrier_t bar;
} cnn_ctx;

/* The forward pass of b.x[0:bs] to the logits b.z4, thread t of T: convolutions by blocks of im2col
 * rows, pooling by samples, dense layers by output columns. The work of each output value does not
 * depend on T, so neither does the result. */
static void cnn_forward(const cnn_shape *s, float *const *W, float *const *bias, cnn_buffers *b, int bs, int t,
                        int T, barrier_t *bar, int *sense) {
    const int C1 = s->C1, C2 = s->C2, D = s->D, NC = s->NC, R1 = s->R1, Q1 = s->Q1, R2 = s->R2, F = s->F,
              K1 = s->K1, K2 = s->K2;
    int c0, c1, k0, k1;
    for (int i = t; i < bs; i += T)
        im2col3(b->x + (size_t)i * CNN_H0 * CNN_H0, CNN_H0, CNN_H0, 1, b->col1 + (size_t)i * R1 * K1);
    barrier_wait(bar, sense);
    part4(bs * R1, t, T, &k0, &k1);
    forward_cols(k1 - k0, K1, b->col1 + (size_t)k0 * K1, K1, W[0], C1, bias[0], b->z1 + (size_t)k0 * C1, C1, 0, C1,
                 0);
    barrier_wait(bar, sense);
    for (int i = t; i < bs; i += T) {
        pool_relu(b->z1 + (size_t)i * R1 * C1, CNN_H1, CNN_H1, C1, b->p1 + (size_t)i * Q1 * C1,
                  b->arg1 + (size_t)i * Q1 * C1);
        im2col3(b->p1 + (size_t)i * Q1 * C1, CNN_P1, CNN_P1, C1, b->col2 + (size_t)i * R2 * K2);
    }
    barrier_wait(bar, sense);
    part4(bs * R2, t, T, &k0, &k1);
    forward_cols(k1 - k0, K2, b->col2 + (size_t)k0 * K2, K2, W[1], C2, bias[1], b->z2 + (size_t)k0 * C2, C2, 0, C2,
                 0);
    barrier_wait(bar, sense);
    for (int i = t; i < bs; i += T)
        pool_relu(b->z2 + (size_t)i * R2 * C2, CNN_H2, CNN_H2, C2, b->p2 + (size_t)i * F, b->arg2 + (size_t)i * F);
    barrier_wait(bar, sense);
    part(D, t, T, &c0, &c1);
    forward_cols(bs, F, b->p2, F, W[2], D, bias[2], b->h3, D, c0, c1, 1);
    barrier_wait(bar, sense);
    part(NC, t, T, &c0, &c1);
    forward_cols(bs, D, b->h3, D, W[3], NC, bias[3], b->z4, NC, c0, c1, 0);
    barrier_wait(bar, sense);
}

/* From d loss / d logits (b.dz4) back to d loss / d conv1's output (b.dz1), thread t of T. */
static void cnn_backward(const cnn_shape *s, float *const *W, cnn_buffers *b, int bs, int t, int T, barrier_t *bar,
                         int *sense) {
    const int C1 = s->C1, C2 = s->C2, D = s->D, NC = s->NC, R1 = s->R1, Q1 = s->Q1, R2 = s->R2, F = s->F,
              K2 = s->K2;
    int k0, k1;
    part(D, t, T, &k0, &k1);
    backward_hidden(bs, NC, b->dz4, NC, W[3], NC, b->h3, b->dh3, D, k0, k1);
    barrier_wait(bar, sense);
    part(F, t, T, &k0, &k1);
    backward_hidden(bs, D, b->dh3, D, W[2], D, b->p2, b->dp2, F, k0, k1);
    barrier_wait(bar, sense);
    for (int i = t; i < bs; i += T)
        pool_relu_back(b->dp2 + (size_t)i * F, b->p2 + (size_t)i * F, b->arg2 + (size_t)i * F, CNN_H2, CNN_H2, C2,
                       b->dz2 + (size_t)i * R2 * C2);
    part(K2, t, T, &k0, &k1);
    for (int r = k0; r < k1; r++)
        for (int j = 0; j < C2; j++) b->w2t[(size_t)j * K2 + r] = W[1][(size_t)r * C2 + j];
    barrier_wait(bar, sense);
    part4(bs * R2, t, T, &k0, &k1);
    forward_cols(k1 - k0, C2, b->dz2 + (size_t)k0 * C2, C2, b->w2t, K2, b->zero, b->dcol2 + (size_t)k0 * K2, K2, 0,
                 K2, 0);
    barrier_wait(bar, sense);
    for (int i = t; i < bs; i += T) {
        float *dp1 = b->dp1 + (size_t)i * Q1 * C1;
        col2im3(b->dcol2 + (size_t)i * R2 * K2, CNN_P1, CNN_P1, C1, dp1);
        pool_relu_back(dp1, b->p1 + (size_t)i * Q1 * C1, b->arg1 + (size_t)i * Q1 * C1, CNN_H1, CNN_H1, C1,
                       b->dz1 + (size_t)i * R1 * C1);
    }
    barrier_wait(bar, sense);
}

/* Weight gradients and Adam, thread t of T. conv1 (9 rows of weights) by columns, the other layers
 * by rows of W; a convolution's gradient is summed over blocks of im2col rows into g1/g2 first, a
 * dense layer's is used by Adam as it is computed. Bias gradients by columns. */
static void cnn_update(cnn_ctx *c, int bs, const adam_t *o, int t) {
    const cnn_shape *s = &c->s;
    const train_job *j = &c->j;
    cnn_buffers *b = &c->b;
    const int T = j->nthreads;
    struct { const float *A; int M, K, N; const float *dZ; float *G, *gb; } layer[4] = {
        {b->col1, bs * s->R1, s->K1, s->C1, b->dz1, b->g1, b->gb},
        {b->col2, bs * s->R2, s->K2, s->C2, b->dz2, b->g2, b->gb + s->C1},
        {b->p2, bs, s->F, s->D, b->dh3, NULL, b->gb + s->C1 + s->C2},
        {b->h3, bs, s->D, s->NC, b->dz4, NULL, b->gb + s->C1 + s->C2 + s->D}};
    int c0, c1, k0, k1;
    for (int l = 0; l < 4; l++) {
        int M = layer[l].M, K = layer[l].K, N = layer[l].N;
        if (layer[l].G) {
            float *G = layer[l].G;
            if (l == 0) { part(N, t, T, &c0, &c1); k0 = 0; k1 = K; }
            else { c0 = 0; c1 = N; part4(K, t, T, &k0, &k1); }
            for (int i0 = 0; i0 < M; i0 += GRAD_MBLOCK) {
                int m = M - i0 < GRAD_MBLOCK ? M - i0 : GRAD_MBLOCK;
                grad_acc(m, k1 - k0, layer[l].A + (size_t)i0 * K + k0, K, layer[l].dZ + (size_t)i0 * N, N,
                         G + (size_t)k0 * N, N, c0, c1, i0 == 0);
            }
            adam_block(G, j->W[l], j->mW[l], j->vW[l], N, k0, k1, c0, c1, o);
        } else {
            part4(K, t, T, &k0, &k1);
            size_t at = (size_t)k0 * N;
            grad_adam(M, k1 - k0, layer[l].A + k0, K, layer[l].dZ, N, j->W[l] + at, j->mW[l] + at, j->vW[l] + at, N, 0,
                      N, o);
        }
        part(N, t, T, &c0, &c1);
        float *gb = layer[l].gb;
        col_sums(M, layer[l].dZ, N, c0, c1, gb);
        for (int k = c0; k < c1; k++) adam_scalar(o, gb[k], j->b[l] + k, j->mb[l] + k, j->vb[l] + k);
    }
}

static void cnn_train_worker(void *p, int t) {
    fp_mode fp = fast_fp_begin();
    cnn_ctx *c = (cnn_ctx *)p;
    const int T = c->j.nthreads, B = c->j.batch;
    int sense = 0;
    int64_t steps = (c->j.n + B - 1) / B;
    for (int64_t s = 0; s < steps; s++) {
        int64_t first = s * B;
        int bs = (int)(c->j.n - first < B ? c->j.n - first : B);
        to_float_rows(c->j.X, c->j.idx, first, bs, CNN_H0 * CNN_H0, c->b.x, t, T);
        barrier_wait(&c->bar, &sense);
        if (s + 1 < steps) prefetch_rows(c->j.X, c->j.idx, first + B, c->j.n, B, CNN_H0 * CNN_H0, t, T);
        cnn_forward(&c->s, c->j.W, c->j.b, &c->b, bs, t, T, &c->bar, &sense);
        if (t == 0) step_loss(&c->j, s, first, bs, c->s.NC, c->b.z4, c->b.dz4, c->b.y);
        barrier_wait(&c->bar, &sense);
        cnn_backward(&c->s, c->j.W, &c->b, bs, t, T, &c->bar, &sense);
        adam_t o = adam_for_step(&c->j, s);
        cnn_update(c, bs, &o, t);
    }
    fast_fp_end(fp);
}

/* dl_train for the CNN: dims = {784, c1, c2, h, classes}, L = 4. */
int dl_cnn_train(int L, const int *dims, float **W, float **b, float **mW, float **vW, float **mb, float **vb,
                 const uint8_t *X, const int64_t *y, const int64_t *idx, int64_t n, int batch, const float *lr,
                 int64_t t0, float beta1, float beta2, float eps, float weight_decay, int decoupled,
                 double *loss_out, int64_t *correct_out, int nthreads) {
    if (cnn_check(L, dims, batch) || n < 0) return DL_EINVAL;
    cnn_ctx c = {.j = JOB_FROM_ARGS, .s = cnn_shape_of(dims)};
    buffer table[CNN_BUFFERS];
    void *mem = table_alloc(table, cnn_table(&c.b, &c.s, (size_t)batch, table));
    if (!mem) return DL_ENOMEM;
    memset(c.b.zero, 0, sizeof(float) * (size_t)c.s.K2);
    int rc = run_training(cnn_train_worker, &c, &c.j, &c.bar);
    free(mem);
    return rc;
}

int64_t dl_cnn_train_bytes(int L, const int *dims, int batch) {
    if (cnn_check(L, dims, batch)) return DL_EINVAL;
    cnn_shape s = cnn_shape_of(dims);
    cnn_buffers b;
    buffer table[CNN_BUFFERS];
    return (int64_t)table_bytes(table, cnn_table(&b, &s, (size_t)batch, table));
}

#define CNN_EVAL_BLOCK 16

/* Inference: each thread runs the forward pass alone over its blocks of CNN_EVAL_BLOCK images. */
static void cnn_eval_worker(void *p, int t) {
    fp_mode fp = fast_fp_begin();
    eval_ctx *c = (eval_ctx *)p;
    const cnn_shape s = cnn_shape_of(c->dims);
    cnn_buffers b;
    buffer table[CNN_BUFFERS];
    cnn_table(&b, &s, CNN_EVAL_BLOCK, table);
    void *mem = table_alloc(table, CNN_FORWARD_BUFFERS);
    int64_t rows[CNN_EVAL_BLOCK];
    barrier_t alone = {.n = 1};
    int sense = 0;
    c->loss[t] = 0.0;
    c->correct[t] = 0;
    c->failed[t] = !mem;
    if (!mem) { fast_fp_end(fp); return; }
    int64_t nblocks = (c->n + CNN_EVAL_BLOCK - 1) / CNN_EVAL_BLOCK;
    for (int64_t blk = t; blk < nblocks; blk += c->nthreads) {
        int64_t first = blk * CNN_EVAL_BLOCK;
        int m = (int)(c->n - first < CNN_EVAL_BLOCK ? c->n - first : CNN_EVAL_BLOCK);
        for (int i = 0; i < m; i++) rows[i] = first + i;
        to_float_rows(c->X, rows, 0, m, CNN_H0 * CNN_H0, b.x, 0, 1);
        cnn_forward(&s, c->W, c->b, &b, m, 0, 1, &alone, &sense);
        c->loss[t] += softmax_xent(m, s.NC, b.z4, c->y ? c->y + first : NULL, NULL, 1.0f,
                                   c->probs ? c->probs + (size_t)first * s.NC : NULL, &c->correct[t]);
    }
    free(mem);
    fast_fp_end(fp);
}

int dl_cnn_evaluate(int L, const int *dims, float **W, float **b, const uint8_t *X, const int64_t *y, int64_t n,
                    float *probs, double *loss_out, int64_t *correct_out, int nthreads) {
    if (cnn_check(L, dims, 1) || n < 0) return DL_EINVAL;
    eval_ctx c = {.L = L, .nthreads = nthreads < 1 ? 1 : nthreads > DL_MAXT ? DL_MAXT : nthreads, .dims = dims,
                  .W = W, .b = b, .X = X, .y = y, .n = n, .probs = probs};
    return run_eval(cnn_eval_worker, &c, loss_out, correct_out);
}

/* Which kernels run here: 1 = AVX2/FMA, 0 = portable C. */
int dl_kernels(void) { return have_avx2(); }
