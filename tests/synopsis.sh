# Sourced by the tool tests: does `TOOL --help` print the SYNOPSIS of its
# mdoc man page? Both sides become one line per form ("lora-x [-a] file ..."),
# words separated by single spaces.
#
#   synopsis_matches BIN/lora-x man/lora-x.1    0 if equal; else prints both

# man_synopsis MANPAGE NAME: render .Nm, .Op (nesting closes at the end of
# the line), .Fl and .Ar of the SYNOPSIS section.
man_synopsis() {
	awk -v name="$2" '
	/^\.Sh /  { insyn = ($2 == "SYNOPSIS"); next }
	!insyn    { next }
	/^\.Nm/   { if (line != "") print line; line = name; next }
	/^\./ {
		out = ""; depth = 0; fl = 0
		for (i = 1; i <= NF; i++) {
			w = $i; if (i == 1) w = substr(w, 2)
			gsub(/\\/, "", w)
			if (w == "Op") { out = out (out == "" || out ~ /\[$/ ? "" : " ") "["; depth++; continue }
			if (w == "Fl") { fl = 1; continue }
			if (w == "Ar") { fl = 0; continue }
			tok = (fl ? "-" : "") w; fl = 0
			out = out (out == "" || out ~ /\[$/ ? "" : " ") tok
		}
		while (depth-- > 0) out = out "]"
		line = line " " out
	}
	END { if (line != "") print line }' "$1"
}

# help_synopsis NAME: the usage block of --help on stdin (its first line and
# the indented lines after it), joined, one line per form (a form starts
# with NAME).
help_synopsis() {
	awk 'NR == 1 { on = 1 } NR > 1 && !/^[ \t]/ { on = 0 } on' |
	sed 's/^usage: //' | tr '\n' ' ' | awk -v name="$1" '
	{ for (i = 1; i <= NF; i++) {
		if ($i == name && line != "") { print line; line = "" }
		line = line (line == "" ? "" : " ") $i } }
	END { if (line != "") print line }'
}

synopsis_matches() {
	_name=$(basename "$1")
	_man=$(man_synopsis "$2" "$_name")
	_help=$("$1" --help | help_synopsis "$_name")
	[ -n "$_man" ] && [ "${#_man}" -gt 40 ] && [ "$_man" = "$_help" ] && return 0
	echo "  man:   $_man"
	echo "  usage: $_help"
	return 1
}
