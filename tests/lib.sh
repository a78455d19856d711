# Sourced by the tool tests: count and print each check, and end with the
# count. HAS_TAIL (default 5) is how many lines of a file `has` shows when
# the text is not there.
#
#   check "what it checks" COMMAND ARGS...   ok when the command succeeds
#   holds "what it checks" 'EXPR'            ok when the shell text EXPR is
#                                            true; it is eval'd before anything
#                                            else, so a $? in it is the status
#                                            of the command before
#   ok NAME, bad NAME                        count a check by hand
#   has FILE TEXT                            grep -q, showing FILE's end if not
#   matches WANT GOT                         cmp -s, showing the diff's start
#                                            if not
#   finish [NOTE]                            "N passed, N failed[ (NOTE)]";
#                                            exits 0 when none failed
fails=0 passes=0
ok() { passes=$((passes+1)); echo "ok   $1"; }
bad() { fails=$((fails+1)); echo "FAIL $1"; }
check() { _d=$1; shift; if "$@"; then ok "$_d"; else bad "$_d"; fi; }
holds() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
has() {
	grep -q -- "$2" "$1" && return 0
	echo "  '$2' not in $1:"; sed 's/^/    /' "$1" | tail -n "${HAS_TAIL:-5}"
	return 1
}
matches() {
	cmp -s "$1" "$2" && return 0
	echo "  $2 differs from $1:"; diff "$1" "$2" | head -10 | sed 's/^/    /'
	return 1
}
finish() {
	echo "$passes passed, $fails failed${1:+ ($1)}"
	[ $fails -eq 0 ]; exit
}
