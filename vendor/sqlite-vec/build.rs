//! Compiles sqlite-vec 0.1.9's released amalgamation (`sqlite-vec.c`, unchanged in this
//! directory) against the bundled SQLite's headers, after the edits below, which are applied
//! here so that the file stays the release's and the change stays readable. Each edit must
//! match exactly once, or the build stops.

const EDITS: &[(&str, &str, &str)] = &[
    (
        "the KNN's per-chunk top-k selection: sorted insertion instead of k passes over the chunk",
        "int min_idx(const f32 *distances, i32 n, u8 *candidates, i32 *out, i32 k,\n            u8 *bTaken, i32 *k_used) {\n  assert(k > 0);",
        r#"/* copilot: the k smallest candidates by sorted insertion (ties in index order), one pass over
 * the n distances: O(n log k) comparisons plus the shifts of insertion, where the release's k
 * passes of a minimum search cost O(n * k) (k in the hundreds made a KNN over 100k vectors cost
 * tens of ms in this function alone). Same contract: `out` gets the indexes, nearest first. */
int min_idx(const f32 *distances, i32 n, u8 *candidates, i32 *out, i32 k,
            u8 *bTaken, i32 *k_used) {
  (void)bTaken;
  assert(k > 0);
  i32 used = 0;
  for (i32 i = 0; i < n; i++) {
    if (!bitmap_get(candidates, i)) {
      continue;
    }
    f32 d = distances[i];
    if (used == k && !(d < distances[out[k - 1]])) {
      continue;
    }
    i32 lo = 0, hi = used;
    while (lo < hi) {
      i32 mid = lo + (hi - lo) / 2;
      if (distances[out[mid]] <= d) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    i32 last = used < k ? used : k - 1;
    memmove(&out[lo + 1], &out[lo], (size_t)(last - lo) * sizeof(i32));
    out[lo] = i;
    if (used < k) {
      used++;
    }
  }
  *k_used = used;
  return SQLITE_OK;
}

/* the release's selection, no longer called */
static int min_idx_release(const f32 *distances, i32 n, u8 *candidates, i32 *out, i32 k,
            u8 *bTaken, i32 *k_used) __attribute__((unused));
static int min_idx_release(const f32 *distances, i32 n, u8 *candidates, i32 *out, i32 k,
            u8 *bTaken, i32 *k_used) {
  assert(k > 0);"#,
    ),
    (
        "a chunk's vectors no nearer than the k-th found so far are not selected at all",
        "    int used1;\n    min_idx(chunk_distances, p->chunk_size, b, chunk_topk_idxs,",
        r#"    /* copilot: once k are found, only what beats the k-th can enter the top k */
    if (k_used == k) {
      f32 kth = topk_distances[k_used - 1];
      for (int i = 0; i < p->chunk_size; i++) {
        if (bitmap_get(b, i) && !(chunk_distances[i] < kth)) {
          bitmap_set(b, i, 0);
        }
      }
    }
    int used1;
    min_idx(chunk_distances, p->chunk_size, b, chunk_topk_idxs,"#,
    ),
    (
        "Hamming distance with the CPU's popcnt instruction when it has one (checked at run time)",
        "static f32 distance_hamming_u64(u64 *a, u64 *b, size_t n) {\n  int same = 0;",
        r#"/* copilot: the build targets baseline x86-64, where __builtin_popcountl is a libgcc call
 * (14% of a binary KNN's time); the popcnt instruction is used when the CPU reports it. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt")))
static f32 distance_hamming_u64_popcnt(u64 *a, u64 *b, size_t n) {
  int same = 0;
  for (unsigned long i = 0; i < n; i++) {
    same += __builtin_popcountll(a[i] ^ b[i]);
  }
  return (f32)same;
}
#endif

static f32 distance_hamming_u64(u64 *a, u64 *b, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("popcnt")) {
    return distance_hamming_u64_popcnt(a, b, n);
  }
#endif
  int same = 0;"#,
    ),
];

fn main() {
    println!("cargo:rerun-if-changed=sqlite-vec.c");
    println!("cargo:rerun-if-changed=build.rs");
    let mut source = std::fs::read_to_string("sqlite-vec.c").expect("sqlite-vec.c");
    for (what, from, to) in EDITS {
        let n = source.matches(from).count();
        assert_eq!(n, 1, "sqlite-vec.c: the edit \"{what}\" matches {n} times, not once");
        source = source.replacen(from, to, 1);
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let file = out.join("sqlite-vec.c");
    std::fs::write(&file, source).unwrap();
    std::fs::copy("sqlite-vec.h", out.join("sqlite-vec.h")).unwrap();
    let include = std::env::var("DEP_SQLITE3_INCLUDE").expect("libsqlite3-sys (bundled) gives its include directory");
    // the release's own warnings (pragma regions, signedness) are not ours to fix here
    cc::Build::new()
        .file(&file)
        .include(&out)
        .include(include)
        .define("SQLITE_CORE", None)
        .warnings(false)
        .flag_if_supported("-w")
        .compile("sqlite_vec0");
}
