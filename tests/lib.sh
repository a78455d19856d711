# Sourced by the tool tests: count and print each check, and end with the
# count. HAS_TAIL (default 5) is how many lines of a file `has` shows when
# the text is not there.
#
#   check "what it checks" COMMAND ARGS...   ok when the command succeeds
#   ok NAME, bad NAME                        count a check by hand
#   has FILE TEXT                            grep -q, showing FILE's end if not
#   finish [NOTE]                            "N passed, N failed[ (NOTE)]";
#                                            exits 0 when none failed
fails=0 passes=0
ok() { passes=$((passes+1)); echo "ok   $1"; }
bad() { fails=$((fails+1)); echo "FAIL $1"; }
check() { _d=$1; shift; if "$@"; then ok "$_d"; else bad "$_d"; fi; }
has() {
	grep -q -- "$2" "$1" && return 0
	echo "  '$2' not in $1:"; sed 's/^/    /' "$1" | tail -n "${HAS_TAIL:-5}"
	return 1
}
finish() {
	echo "$passes passed, $fails failed${1:+ ($1)}"
	[ $fails -eq 0 ]; exit
}
