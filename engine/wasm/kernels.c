// Matrix kernels of the Mycelium engine: freestanding C for WebAssembly SIMD128, no libc.
// Built by scripts/build-wasm.sh into kernels.wasm (committed). Layouts: engine/index.ts `Matrix`.
//
// Every matmul kernel has one signature, so the JS side dispatches them uniformly:
//   matmul_*(out, w, ws, x, xs, xsum, rows, cols, T, r0, r1)
//   out[t * rows + r] = sum_c W[r, c] * x[t, c]   for t < T and r in [r0, r1)
// f32 / f16: x is T x cols float32 and ws, xs, xsum are unused. q8_0 / q4_0: x, xs, xsum are the
// activations prepared by `quantize_act` (int16 quants in split order, one scale and one quant
// sum per 32-block). Threads split the rows: r0 (and r1 unless it is `rows`) are multiples of 4.
//
// Determinism: each (row, token) result is computed in one fixed order whatever T, the position
// in a token tile, the row range or the thread count, so decoding a token gives bitwise the same
// floats as prefilling it. Kernels keep no arrays in locals, so they never touch the shadow stack
// (scripts/build-wasm.sh fails the build if one does): instances on many threads share memory.
#include <wasm_simd128.h>

typedef signed char i8;
typedef unsigned char u8;
typedef short i16;
typedef unsigned short u16;
typedef int i32;
typedef unsigned int u32;

#define EXPORT(name) __attribute__((export_name(#name)))
#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("unroll") // small constant trip counts: keep tile arrays in locals

// Prefill walks rows in blocks of about this many weight bytes so a block stays in L2 while
// every token tile passes over it.
#define ROW_BLOCK_BYTES (192 * 1024)
#define QK 32 // elements per quantization block

INLINE v128_t ld(const void *p) { return wasm_v128_load(p); }
INLINE int min_i(int a, int b) { return a < b ? a : b; }

INLINE int row_block(int r0, int r1, int row_bytes) {
  int rb = (ROW_BLOCK_BYTES / row_bytes) & ~3;
  if (rb < 4) rb = 4;
  return min_i(rb, r1 - r0);
}

// Lanes of v summed as (v0 + v2) + (v1 + v3): the one reduction order of every f32 path.
INLINE float hsum_f32(v128_t v) {
  v128_t s = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
  s = wasm_f32x4_add(s, wasm_i32x4_shuffle(s, s, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(s, 0);
}

// [sum(p0), sum(p1), sum(p2), sum(p3)] for four i32x4 partial sums (a 4x4 transpose-add).
INLINE v128_t hsum4_i32(v128_t p0, v128_t p1, v128_t p2, v128_t p3) {
  v128_t a = wasm_i32x4_add(wasm_i32x4_shuffle(p0, p1, 0, 4, 1, 5), wasm_i32x4_shuffle(p0, p1, 2, 6, 3, 7));
  v128_t b = wasm_i32x4_add(wasm_i32x4_shuffle(p2, p3, 0, 4, 1, 5), wasm_i32x4_shuffle(p2, p3, 2, 6, 3, 7));
  return wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 1, 4, 5), wasm_i32x4_shuffle(a, b, 2, 3, 6, 7));
}

// ---------------------------------------------------------------------------------------------
// f32. A tile of R rows x N tokens keeps one f32x4 accumulator per (row, token): lane k sums the
// products of columns c = k (mod 4) in increasing c; then hsum_f32; then the scalar tail.

#define F32_TILE(R, N)                                                                              \
  INLINE void f32_tile_##R##x##N(float *out, const float *w, const float *x, int rows, int cols,    \
                                 int r, int t) {                                                    \
    v128_t acc[R][N];                                                                               \
    UNROLL for (int i = 0; i < R; i++)                                                              \
      UNROLL for (int j = 0; j < N; j++) acc[i][j] = wasm_f32x4_splat(0.0f);                        \
    int c = 0;                                                                                      \
    for (; c + 4 <= cols; c += 4) {                                                                 \
      v128_t xv[N];                                                                                 \
      UNROLL for (int j = 0; j < N; j++) xv[j] = ld(x + (t + j) * cols + c);                        \
      UNROLL for (int i = 0; i < R; i++) {                                                          \
        v128_t wv = ld(w + (r + i) * cols + c);                                                     \
        UNROLL for (int j = 0; j < N; j++) acc[i][j] = wasm_f32x4_add(acc[i][j], wasm_f32x4_mul(wv, xv[j])); \
      }                                                                                             \
    }                                                                                               \
    UNROLL for (int i = 0; i < R; i++)                                                              \
      UNROLL for (int j = 0; j < N; j++) {                                                          \
        float s = hsum_f32(acc[i][j]);                                                              \
        for (int cc = c; cc < cols; cc++) s += w[(r + i) * cols + cc] * x[(t + j) * cols + cc];     \
        out[(t + j) * rows + r + i] = s;                                                            \
      }                                                                                             \
  }

F32_TILE(4, 1)
F32_TILE(8, 1)
F32_TILE(1, 1)
F32_TILE(2, 4)
F32_TILE(1, 4)

EXPORT(matmul_f32)
void matmul_f32(float *out, const void *wp, const float *ws, const void *xp, const float *xs,
                const i32 *xsum, int rows, int cols, int T, int r0, int r1) {
  const float *w = (const float *)wp, *x = (const float *)xp;
  (void)ws; (void)xs; (void)xsum;
  int rb = row_block(r0, r1, cols * 4);
  for (int rs = r0; rs < r1; rs += rb) {
    int re = min_i(rs + rb, r1), t = 0;
    for (; t + 4 <= T; t += 4) {
      int r = rs;
      for (; r + 2 <= re; r += 2) f32_tile_2x4(out, w, x, rows, cols, r, t);
      for (; r < re; r++) f32_tile_1x4(out, w, x, rows, cols, r, t);
    }
    for (; t < T; t++) {
      int r = rs;
      for (; r + 8 <= re; r += 8) f32_tile_8x1(out, w, x, rows, cols, r, t);
      for (; r + 4 <= re; r += 4) f32_tile_4x1(out, w, x, rows, cols, r, t);
      for (; r < re; r++) f32_tile_1x1(out, w, x, rows, cols, r, t);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// f16: row-major IEEE halves, converted exactly with integer SIMD, 8 at a time. Each f32 lane is
// assembled from two int16 lanes: high = (h >>s 3) & 0x8fff (sign, then the exponent and top
// mantissa bits) and low = h << 13, i.e. the f32 bits sign | (h & 0x7fff) << 13, which times
// 2^112 is the value (subnormal halves included). Exponent 31 (Inf / NaN) first gets the f32
// exponent forced to all ones, so the product stays Inf / NaN.

INLINE void f16x8_to_f32(v128_t h, v128_t *lo, v128_t *hi) {
  v128_t top = wasm_v128_and(wasm_i16x8_shr(h, 3), wasm_i16x8_const_splat((i16)0x8fff));
  v128_t special = wasm_i16x8_eq(wasm_v128_and(h, wasm_i16x8_const_splat(0x7c00)), wasm_i16x8_const_splat(0x7c00));
  top = wasm_v128_or(top, wasm_v128_and(special, wasm_i16x8_const_splat(0x7f80)));
  v128_t bottom = wasm_i16x8_shl(h, 13);
  const v128_t magic = wasm_f32x4_const_splat(0x1p112f);
  *lo = wasm_f32x4_mul(wasm_i16x8_shuffle(bottom, top, 0, 8, 1, 9, 2, 10, 3, 11), magic);
  *hi = wasm_f32x4_mul(wasm_i16x8_shuffle(bottom, top, 4, 12, 5, 13, 6, 14, 7, 15), magic);
}
INLINE float f16_scalar(u16 h) {
  v128_t lo, hi;
  f16x8_to_f32(wasm_i16x8_splat((i16)h), &lo, &hi);
  return wasm_f32x4_extract_lane(lo, 0);
}

// Same accumulation order as f32, 8 columns (two f32x4 products, low half first) per step.
#define F16_TILE(R, N)                                                                              \
  INLINE void f16_tile_##R##x##N(float *out, const u16 *w, const float *x, int rows, int cols,      \
                                 int r, int t) {                                                    \
    v128_t acc[R][N];                                                                               \
    UNROLL for (int i = 0; i < R; i++)                                                              \
      UNROLL for (int j = 0; j < N; j++) acc[i][j] = wasm_f32x4_splat(0.0f);                        \
    int c = 0;                                                                                      \
    for (; c + 8 <= cols; c += 8) {                                                                 \
      UNROLL for (int i = 0; i < R; i++) {                                                          \
        v128_t wl, wh;                                                                              \
        f16x8_to_f32(ld(w + (r + i) * cols + c), &wl, &wh);                                         \
        UNROLL for (int j = 0; j < N; j++) {                                                        \
          const float *xt = x + (t + j) * cols + c;                                                 \
          acc[i][j] = wasm_f32x4_add(acc[i][j], wasm_f32x4_mul(wl, ld(xt)));                        \
          acc[i][j] = wasm_f32x4_add(acc[i][j], wasm_f32x4_mul(wh, ld(xt + 4)));                    \
        }                                                                                           \
      }                                                                                             \
    }                                                                                               \
    UNROLL for (int i = 0; i < R; i++)                                                              \
      UNROLL for (int j = 0; j < N; j++) {                                                          \
        float s = hsum_f32(acc[i][j]);                                                              \
        for (int cc = c; cc < cols; cc++) s += f16_scalar(w[(r + i) * cols + cc]) * x[(t + j) * cols + cc]; \
        out[(t + j) * rows + r + i] = s;                                                            \
      }                                                                                             \
  }

F16_TILE(4, 1)
F16_TILE(1, 1)
F16_TILE(2, 4)
F16_TILE(1, 4)

EXPORT(matmul_f16)
void matmul_f16(float *out, const void *wp, const float *ws, const void *xp, const float *xs,
                const i32 *xsum, int rows, int cols, int T, int r0, int r1) {
  const u16 *w = (const u16 *)wp;
  const float *x = (const float *)xp;
  (void)ws; (void)xs; (void)xsum;
  int rb = row_block(r0, r1, cols * 2);
  for (int rs = r0; rs < r1; rs += rb) {
    int re = min_i(rs + rb, r1), t = 0;
    for (; t + 4 <= T; t += 4) {
      int r = rs;
      for (; r + 2 <= re; r += 2) f16_tile_2x4(out, w, x, rows, cols, r, t);
      for (; r < re; r++) f16_tile_1x4(out, w, x, rows, cols, r, t);
    }
    for (; t < T; t++) {
      int r = rs;
      for (; r + 4 <= re; r += 4) f16_tile_4x1(out, w, x, rows, cols, r, t);
      for (; r < re; r++) f16_tile_1x1(out, w, x, rows, cols, r, t);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Activations for q8_0 / q4_0: per 32-block d = amax / 127, q = nearest(x / d) (ties to even),
// stored as int16 in split order [even 0..14][odd 1..15][even 16..30][odd 17..31] so that the
// weight kernels can widen int8 / nibbles with one shift or mask. xs[b] = d * scale_mul (q8_0
// passes 1/256, see below), xsum[b] = sum of the block's quants (q4_0's -8 offset).

EXPORT(quantize_act)
void quantize_act(const float *x, int nblocks, i16 *xq, float *xs, i32 *xsum, float scale_mul) {
  for (int b = 0; b < nblocks; b++) {
    const float *xb = x + b * QK;
    v128_t v0 = ld(xb), v1 = ld(xb + 4), v2 = ld(xb + 8), v3 = ld(xb + 12);
    v128_t v4 = ld(xb + 16), v5 = ld(xb + 20), v6 = ld(xb + 24), v7 = ld(xb + 28);
    v128_t m = wasm_f32x4_max(wasm_f32x4_max(wasm_f32x4_max(wasm_f32x4_abs(v0), wasm_f32x4_abs(v1)),
                                             wasm_f32x4_max(wasm_f32x4_abs(v2), wasm_f32x4_abs(v3))),
                              wasm_f32x4_max(wasm_f32x4_max(wasm_f32x4_abs(v4), wasm_f32x4_abs(v5)),
                                             wasm_f32x4_max(wasm_f32x4_abs(v6), wasm_f32x4_abs(v7))));
    m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
    m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
    float amax = wasm_f32x4_extract_lane(m, 0);
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    v128_t s = wasm_f32x4_splat(id);
#define Q(v) wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v, s)))
    v128_t q0 = Q(v0), q1 = Q(v1), q2 = Q(v2), q3 = Q(v3), q4 = Q(v4), q5 = Q(v5), q6 = Q(v6), q7 = Q(v7);
#undef Q
    v128_t tot = wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_add(q0, q1), wasm_i32x4_add(q2, q3)),
                                wasm_i32x4_add(wasm_i32x4_add(q4, q5), wasm_i32x4_add(q6, q7)));
    tot = wasm_i32x4_add(tot, wasm_i32x4_shuffle(tot, tot, 2, 3, 0, 1));
    tot = wasm_i32x4_add(tot, wasm_i32x4_shuffle(tot, tot, 1, 0, 3, 2));
    v128_t a = wasm_i16x8_narrow_i32x4(q0, q1), c = wasm_i16x8_narrow_i32x4(q2, q3);
    v128_t e = wasm_i16x8_narrow_i32x4(q4, q5), g = wasm_i16x8_narrow_i32x4(q6, q7);
    i16 *o = xq + b * QK;
    wasm_v128_store(o, wasm_i16x8_shuffle(a, c, 0, 2, 4, 6, 8, 10, 12, 14));
    wasm_v128_store(o + 8, wasm_i16x8_shuffle(a, c, 1, 3, 5, 7, 9, 11, 13, 15));
    wasm_v128_store(o + 16, wasm_i16x8_shuffle(e, g, 0, 2, 4, 6, 8, 10, 12, 14));
    wasm_v128_store(o + 24, wasm_i16x8_shuffle(e, g, 1, 3, 5, 7, 9, 11, 13, 15));
    xs[b] = d * scale_mul;
    xsum[b] = wasm_i32x4_extract_lane(tot, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// q8_0, 4-row interleaved (group-block = 4 x 32 int8 + 4 f32 scales). Read as int16 lanes, 16
// weight bytes give 256 * even elements by `shl 8` and 256 * odd elements by `and 0xff00`; the
// factor 256 is exact and folded into xs (scale_mul = 1/256). |sum| <= 32 * 256 * 128 * 127 fits
// int32. Per block, the four rows' integer dots are transposed into one i32x4 and accumulated as
// acc += float(dot) * (w_scale[0..3] * x_scale): one f32x4 accumulator per (group, token).

INLINE v128_t q8_dot_half(v128_t v, v128_t xe, v128_t xo, v128_t odd) {
  return wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_i16x8_shl(v, 8), xe),
                        wasm_i32x4_dot_i16x8(wasm_v128_and(v, odd), xo));
}

INLINE v128_t q8_scale(v128_t acc, v128_t dots, const float *ws4, float xs) {
  return wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(dots),
                                            wasm_f32x4_mul(ld(ws4), wasm_f32x4_splat(xs))));
}

// One group (4 rows starting at g * 4) for one token.
INLINE void q8_group_1(float *out, const i8 *wg, const float *sg, const i16 *xq, const float *xs,
                       int nb, int r) {
  const v128_t odd = wasm_i16x8_const_splat((i16)0xff00);
  v128_t acc = wasm_f32x4_splat(0.0f);
  for (int b = 0; b < nb; b++) {
    const i8 *wb = wg + b * 128;
    const i16 *xb = xq + b * QK;
    v128_t x0 = ld(xb), x1 = ld(xb + 8), x2 = ld(xb + 16), x3 = ld(xb + 24);
    v128_t p0 = wasm_i32x4_add(q8_dot_half(ld(wb), x0, x1, odd), q8_dot_half(ld(wb + 16), x2, x3, odd));
    v128_t p1 = wasm_i32x4_add(q8_dot_half(ld(wb + 32), x0, x1, odd), q8_dot_half(ld(wb + 48), x2, x3, odd));
    v128_t p2 = wasm_i32x4_add(q8_dot_half(ld(wb + 64), x0, x1, odd), q8_dot_half(ld(wb + 80), x2, x3, odd));
    v128_t p3 = wasm_i32x4_add(q8_dot_half(ld(wb + 96), x0, x1, odd), q8_dot_half(ld(wb + 112), x2, x3, odd));
    acc = q8_scale(acc, hsum4_i32(p0, p1, p2, p3), sg + b * 4, xs[b]);
  }
  wasm_v128_store(out + r, acc);
}

// One group for two tokens: each weight vector is widened once and used twice.
INLINE void q8_group_2(float *out, const i8 *wg, const float *sg, const i16 *xq, const float *xs,
                       int nb, int rows, int r) {
  const v128_t odd = wasm_i16x8_const_splat((i16)0xff00);
  const i16 *xq1 = xq + nb * QK;
  const float *xs1 = xs + nb;
  v128_t acc0 = wasm_f32x4_splat(0.0f), acc1 = acc0;
  for (int b = 0; b < nb; b++) {
    const i8 *wb = wg + b * 128;
    const i16 *xa = xq + b * QK, *xb = xq1 + b * QK;
    v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int h = 0; h < 2; h++) {
      const i8 *wh = wb + h * 16;
      const i16 *xah = xa + h * 16, *xbh = xb + h * 16;
#define ROW(i, A, B)                                                                                \
      {                                                                                             \
        v128_t v = ld(wh + i * 32), we = wasm_i16x8_shl(v, 8), wo = wasm_v128_and(v, odd);          \
        A = wasm_i32x4_add(A, wasm_i32x4_add(wasm_i32x4_dot_i16x8(we, ld(xah)), wasm_i32x4_dot_i16x8(wo, ld(xah + 8)))); \
        B = wasm_i32x4_add(B, wasm_i32x4_add(wasm_i32x4_dot_i16x8(we, ld(xbh)), wasm_i32x4_dot_i16x8(wo, ld(xbh + 8)))); \
      }
      ROW(0, a0, b0) ROW(1, a1, b1) ROW(2, a2, b2) ROW(3, a3, b3)
#undef ROW
    }
    acc0 = q8_scale(acc0, hsum4_i32(a0, a1, a2, a3), sg + b * 4, xs[b]);
    acc1 = q8_scale(acc1, hsum4_i32(b0, b1, b2, b3), sg + b * 4, xs1[b]);
  }
  wasm_v128_store(out + r, acc0);
  wasm_v128_store(out + rows + r, acc1);
}

EXPORT(matmul_q8_0)
void matmul_q8_0(float *out, const void *wp, const float *ws, const void *xp, const float *xs,
                 const i32 *xsum, int rows, int cols, int T, int r0, int r1) {
  const i8 *w = (const i8 *)wp;
  const i16 *xq = (const i16 *)xp;
  int nb = cols / QK;
  (void)xsum;
  int rb = row_block(r0, r1, cols);
  for (int rs = r0; rs < r1; rs += rb) {
    int re = min_i(rs + rb, r1), t = 0;
    for (; t + 2 <= T; t += 2)
      for (int r = rs; r < re; r += 4)
        q8_group_2(out + t * rows, w + r * cols, ws + r * nb, xq + t * cols, xs + t * nb, nb, rows, r);
    for (; t < T; t++)
      for (int r = rs; r < re; r += 4)
        q8_group_1(out + t * rows, w + r * cols, ws + r * nb, xq + t * cols, xs + t * nb, nb, r);
  }
}

// ---------------------------------------------------------------------------------------------
// q4_0, 4-row interleaved (group-block = 4 x 16 bytes + 4 f32 scales). Byte j holds element j
// (low nibble) and j + 16 (high nibble); as int16 lanes, `& 0xf`, `>> 8 & 0xf`, `>> 4 & 0xf`
// and `>> 12` give the even / odd elements of each half as 0..15. The -8 offset is applied per
// block as dot - 8 * sum(x quants).

INLINE v128_t q4_dot(v128_t v, const i16 *xb, v128_t nib) {
  v128_t le = wasm_v128_and(v, nib);
  v128_t lo = wasm_v128_and(wasm_u16x8_shr(v, 8), nib);
  v128_t he = wasm_v128_and(wasm_u16x8_shr(v, 4), nib);
  v128_t ho = wasm_u16x8_shr(v, 12);
  return wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_dot_i16x8(le, ld(xb)), wasm_i32x4_dot_i16x8(lo, ld(xb + 8))),
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(he, ld(xb + 16)), wasm_i32x4_dot_i16x8(ho, ld(xb + 24))));
}

INLINE v128_t q4_offset(v128_t dots, i32 xsum) {
  return wasm_i32x4_sub(dots, wasm_i32x4_splat(xsum * 8));
}

INLINE void q4_group_1(float *out, const u8 *wg, const float *sg, const i16 *xq, const float *xs,
                       const i32 *xsum, int nb, int r) {
  const v128_t nib = wasm_i16x8_const_splat(0xf);
  v128_t acc = wasm_f32x4_splat(0.0f);
  for (int b = 0; b < nb; b++) {
    const u8 *wb = wg + b * 64;
    const i16 *xb = xq + b * QK;
    v128_t s = hsum4_i32(q4_dot(ld(wb), xb, nib), q4_dot(ld(wb + 16), xb, nib),
                         q4_dot(ld(wb + 32), xb, nib), q4_dot(ld(wb + 48), xb, nib));
    acc = q8_scale(acc, q4_offset(s, xsum[b]), sg + b * 4, xs[b]);
  }
  wasm_v128_store(out + r, acc);
}

INLINE void q4_group_2(float *out, const u8 *wg, const float *sg, const i16 *xq, const float *xs,
                       const i32 *xsum, int nb, int rows, int r) {
  const v128_t nib = wasm_i16x8_const_splat(0xf);
  const i16 *xq1 = xq + nb * QK;
  v128_t acc0 = wasm_f32x4_splat(0.0f), acc1 = acc0;
  for (int b = 0; b < nb; b++) {
    const u8 *wb = wg + b * 64;
    const i16 *xa = xq + b * QK, *xb = xq1 + b * QK;
    v128_t a0, a1, a2, a3, b0, b1, b2, b3;
#define ROW(i, A, B)                                                                                \
    {                                                                                               \
      v128_t v = ld(wb + i * 16);                                                                   \
      v128_t le = wasm_v128_and(v, nib), lo = wasm_v128_and(wasm_u16x8_shr(v, 8), nib);             \
      A = wasm_i32x4_add(wasm_i32x4_dot_i16x8(le, ld(xa)), wasm_i32x4_dot_i16x8(lo, ld(xa + 8)));   \
      B = wasm_i32x4_add(wasm_i32x4_dot_i16x8(le, ld(xb)), wasm_i32x4_dot_i16x8(lo, ld(xb + 8)));   \
      v128_t he = wasm_v128_and(wasm_u16x8_shr(v, 4), nib), ho = wasm_u16x8_shr(v, 12);             \
      A = wasm_i32x4_add(A, wasm_i32x4_add(wasm_i32x4_dot_i16x8(he, ld(xa + 16)), wasm_i32x4_dot_i16x8(ho, ld(xa + 24)))); \
      B = wasm_i32x4_add(B, wasm_i32x4_add(wasm_i32x4_dot_i16x8(he, ld(xb + 16)), wasm_i32x4_dot_i16x8(ho, ld(xb + 24)))); \
    }
    ROW(0, a0, b0) ROW(1, a1, b1) ROW(2, a2, b2) ROW(3, a3, b3)
#undef ROW
    acc0 = q8_scale(acc0, q4_offset(hsum4_i32(a0, a1, a2, a3), xsum[b]), sg + b * 4, xs[b]);
    acc1 = q8_scale(acc1, q4_offset(hsum4_i32(b0, b1, b2, b3), xsum[nb + b]), sg + b * 4, xs[nb + b]);
  }
  wasm_v128_store(out + r, acc0);
  wasm_v128_store(out + rows + r, acc1);
}

EXPORT(matmul_q4_0)
void matmul_q4_0(float *out, const void *wp, const float *ws, const void *xp, const float *xs,
                 const i32 *xsum, int rows, int cols, int T, int r0, int r1) {
  const u8 *w = (const u8 *)wp;
  const i16 *xq = (const i16 *)xp;
  int nb = cols / QK;
  int rb = row_block(r0, r1, cols / 2);
  for (int rs = r0; rs < r1; rs += rb) {
    int re = min_i(rs + rb, r1), t = 0;
    for (; t + 2 <= T; t += 2)
      for (int r = rs; r < re; r += 4)
        q4_group_2(out + t * rows, w + r * cols / 2, ws + r * nb, xq + t * cols, xs + t * nb, xsum + t * nb, nb, rows, r);
    for (; t < T; t++)
      for (int r = rs; r < re; r += 4)
        q4_group_1(out + t * rows, w + r * cols / 2, ws + r * nb, xq + t * cols, xs + t * nb, xsum + t * nb, nb, r);
  }
}

// ---- Attention ---------------------------------------------------------------------------------
// attention(out, q, keys, values, scores, params, n_heads, head_size, T, h0, h1), the matmul
// signature so the pool dispatches it the same way, split by heads [h0, h1):
//   for t < T at position p = pos0 + t and each head h (kv head h / (n_heads / n_kv_heads)):
//   out[t, h] = softmax_s(q[t, h] . keys[s, kvh] / sqrt(head_size), s <= p) . values[s, kvh]
// params = { pos0, n_kv_heads, scores_stride }; head h uses scores[h * scores_stride ...] as
// scratch (so threads on different heads never share it). head_size must be a multiple of 4.
// The softmax is two-pass (max, exp and sum, divide) as llama2.c's.

// e^x in float32 (Cephes expf: range reduction by ln 2, degree-5 polynomial, ~1 ulp).
INLINE float exp_f32(float x) {
  if (x < -87.33654f) return 0.0f;
  if (x > 88.3762626647949f) return __builtin_inff();
  const float n = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  union { float f; u32 u; } scale;
  scale.u = (u32)((int)n + 127) << 23;
  return y * scale.f;
}

INLINE float hsum_f32x4(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

EXPORT(attention)
void attention(float *out, const float *q, const float *keys, const float *values, float *scores,
               const i32 *params, int n_heads, int head_size, int T, int h0, int h1) {
  const int pos0 = params[0], n_kv_heads = params[1], scores_stride = params[2];
  const int dim = n_heads * head_size, kv_dim = n_kv_heads * head_size;
  const int kv_mul = n_heads / n_kv_heads;
  const float root = __builtin_sqrtf((float)head_size);
  for (int h = h0; h < h1; h++) {
    float *sc = scores + h * scores_stride;
    const int kvo = (h / kv_mul) * head_size;
    for (int t = 0; t < T; t++) {
      const int pos = pos0 + t;
      const float *qr = q + t * dim + h * head_size;
      float max = -__builtin_inff();
      for (int s = 0; s <= pos; s++) {
        const float *kr = keys + s * kv_dim + kvo;
        v128_t acc = wasm_f32x4_splat(0.0f);
        for (int i = 0; i < head_size; i += 4) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(ld(qr + i), ld(kr + i)));
        const float d = hsum_f32x4(acc) / root;
        sc[s] = d;
        if (d > max) max = d;
      }
      float sum = 0.0f;
      for (int s = 0; s <= pos; s++) {
        sc[s] = exp_f32(sc[s] - max);
        sum += sc[s];
      }
      for (int s = 0; s <= pos; s++) sc[s] /= sum;
      float *o = out + t * dim + h * head_size;
      for (int i = 0; i < head_size; i += 4) {
        v128_t acc = wasm_f32x4_splat(0.0f);
        const float *vr = values + kvo + i;
        for (int s = 0; s <= pos; s++) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(sc[s]), ld(vr + s * kv_dim)));
        wasm_v128_store(o + i, acc);
      }
    }
  }
}

// ---- SwiGLU ------------------------------------------------------------------------------------
// swiglu(gate, up, n): gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + e^-gate[i]) * up[i].
// Four lanes at a time with the same float32 e^x as exp_f32 (n need not be a multiple of 4).

INLINE v128_t exp_f32x4(v128_t x) {
  const v128_t lo = wasm_f32x4_splat(-87.33654f), hi = wasm_f32x4_splat(88.3762626647949f);
  const v128_t under = wasm_f32x4_lt(x, lo), over = wasm_f32x4_gt(x, hi);
  x = wasm_f32x4_min(wasm_f32x4_max(x, lo), hi);
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.3981999507e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(8.3334519073e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(4.1665795894e-2f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.6666665459e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(5.0000001201e-1f));
  const v128_t y = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(p, r), r), r), wasm_f32x4_splat(1.0f));
  const v128_t scale = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  v128_t e = wasm_f32x4_mul(y, scale);
  e = wasm_v128_andnot(e, under);
  return wasm_v128_bitselect(wasm_f32x4_splat(__builtin_inff()), e, over);
}

EXPORT(swiglu)
void swiglu(float *gate, const float *up, int n) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t g = ld(gate + i);
    const v128_t silu = wasm_f32x4_div(g, wasm_f32x4_add(one, exp_f32x4(wasm_f32x4_neg(g))));
    wasm_v128_store(gate + i, wasm_f32x4_mul(silu, ld(up + i)));
  }
  for (; i < n; i++) gate[i] = gate[i] / (1.0f + exp_f32(-gate[i])) * up[i];
}
