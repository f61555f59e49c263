// Package route is corral's label grammar and pool matching. It is pure: no
// I/O, no clock, no globals that change.
//
// # The label grammar
//
// A job's runs-on labels decide which pools accept it. Labels compare
// case-insensitively (GitHub's semantics); each job label is read as exactly
// one of the following, in this order:
//
//  1. key=value, for a known key (see Keys below). A known key with an
//     empty or malformed value refuses the job. An unknown key (run-id=42,
//     team=web) is an ordinary unique label: passed through, no constraint.
//  2. a generic label that every runner carries: self-hosted, linux and the
//     arch words x64, x86_64, amd64, arm64, aarch64, plus Options.Generic.
//     An arch word constrains the pool's arch like arch=; the others
//     constrain nothing.
//  3. a size word: small, medium, large, xlarge by default (Options.Sizes
//     replaces the table, a pool's Sizes overrides or adds words for that
//     pool). A pool that does not define a word some other pool defines
//     refuses a job asking for it.
//  4. a capacity word: numbers with units, e.g. 4cpu8gb50gb, 2cpu4gb, 8gb,
//     16gb4cpu. The number before "cpu" is the CPU count (anywhere in the
//     word); the first gb/gib/mb/mib/tb/tib value is the memory, the second
//     the disk. gb and gib both mean GiB, mb and mib MiB, tb and tib TiB.
//     A word with other units (2x, 1password) is not a capacity word.
//  5. a pool's own label: a pool accepts a job only when ALL its labels are
//     on the job. Pool labels are exclusive too: a label that belongs to
//     some pool but not to this one (gpu, say) makes this pool refuse the
//     job, so a job labelled corral and gpu never lands on a pool labelled
//     corral alone. A pool label may not be a known key=value, a size word
//     or a capacity word, and an arch word must agree with the pool's arch
//     (New refuses such pools), so every label reads one way only.
//  6. anything else is a unique label (a run id, a branch name): passed
//     through without constraint. It only makes the runner binding exact,
//     since a runner is registered with exactly the job's labels.
//
// # Keys
//
// Values compare case-insensitively.
//
//	pool=ID           only the pool with that id
//	provider=NAME     only pools whose provider is NAME
//	runs-on=NAME      the same as provider=NAME (tornade's spelling)
//	image=X           only pools whose image is X
//	arch=A            only pools of that arch: x64 (also amd64, x86_64,
//	                  x86-64) or arm64 (also aarch64)
//	cpu=N             N CPUs (a positive whole number)
//	ram=S, memory=S   memory; S is a size: 8, 8gb, 8GiB, 512mb, 1tb (bare = GiB)
//	disk=S            disk, same sizes
//	size=WORD         the same as the size word WORD
//
// # The flavor
//
// The job's flavor starts from the pool's Flavor; a size word replaces it;
// capacity words then set the dimensions they name; cpu=, ram=/memory= and
// disk= set theirs last (explicit keys win over capacity words, which win
// over size words). Two different values for one dimension at the same
// level (cpu=4 and cpu=8, two size words, two capacity words that disagree,
// arch=arm64 with x64) refuse the job. A flavor above the pool's Max in any
// dimension is refused with a reason naming the dimension and both
// numbers; it is never shrunk. A zero Max dimension means no cap.
//
// # Arch-less jobs
//
// A job that names no arch (no arch word, no arch= key, no size word with
// an arch, no pool=) goes only to pools of the default arch: x64, or
// Options.DefaultArch. A pool of another arch takes it only with
// Pool.AcceptAnyArch, so an x64 build never lands on arm64 because the x64
// pools refused it (too big, full) or because arm64 comes first.
//
// # Limits
//
// A job with more than MaxLabels distinct labels (case-insensitively), a
// label longer than MaxLabelLen characters, with a control character or
// not valid UTF-8 is refused with the reason, whatever the pools: the
// forges would refuse its runner (GitHub answers 422 beyond 100 labels).
//
// # Tenants and targets
//
// A pool accepts only jobs of its own tenant and, when its Targets list is
// not empty, only jobs of those targets. An empty tenant or target id in
// Route skips that check (the `corral route` command uses it). A job with no
// labels is refused.
//
// Accepting pools are ordered by Priority (lower first), then by ID.
package route
