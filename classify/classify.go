// Package classify decides the task category of a chat request from the
// latest user message, read with the conversation as context, the way
// WilmerAI routes by intent, but locally and in microseconds: lexical
// features (instruction verbs in several languages, code fences, stack
// traces, math notation, pasted material, scripts), no network.
package classify

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Categories the classifier knows.
const (
	Coding    = "coding"
	Math      = "math"
	Creative  = "creative"
	Summarize = "summarize"
	Extract   = "extract"
	Translate = "translate"
	Chat      = "chat"
)

// All lists the categories in a stable order.
var All = []string{Coding, Math, Creative, Summarize, Extract, Translate, Chat}

// Message is one turn's text.
type Message struct {
	Role string
	Text string
}

// MessagesOf reads the messages of an OpenAI chat body (text parts only).
func MessagesOf(body []byte) []Message {
	var out []Message
	gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
		c := m.Get("content")
		text := c.Str
		if c.IsArray() {
			var b strings.Builder
			c.ForEach(func(_, p gjson.Result) bool {
				if t := p.Get("text"); t.Type == gjson.String {
					b.WriteString(t.Str)
					b.WriteByte('\n')
				}
				return true
			})
			text = b.String()
		}
		out = append(out, Message{Role: m.Get("role").Str, Text: text})
		return true
	})
	if len(out) == 0 {
		if p := gjson.GetBytes(body, "prompt"); p.Type == gjson.String {
			out = append(out, Message{Role: "user", Text: p.Str})
		}
	}
	return out
}

// Result is the decision with the evidence for it.
type Result struct {
	Category string
	Scores   [7]float64 // in the order of All
	Reason   string
}

// maxScan bounds how much of a message is read: the instruction is near the
// start, and pasted material beyond this adds nothing.
const maxScan = 4096

// Classify returns the category of the conversation's latest user message.
func Classify(msgs []Message) Result {
	last, prev, prevAssistant, system := -1, -1, -1, ""
	for i := len(msgs) - 1; i >= 0; i-- {
		switch msgs[i].Role {
		case "user":
			if last < 0 {
				last = i
			} else if prev < 0 {
				prev = i
			}
		case "assistant":
			if last >= 0 && prevAssistant < 0 {
				prevAssistant = i
			}
		case "system", "developer":
			if len(system) < maxScan {
				system += msgs[i].Text + "\n"
			}
		}
	}
	if last < 0 {
		return Result{Category: Chat, Reason: "no user message"}
	}
	var s scores
	text := clip(msgs[last].Text)
	s.add(featuresOf(text, true))
	if system != "" {
		s.addScaled(featuresOf(clip(system), false), 0.5)
	}
	// A short follow-up leans on what came before, unless it says it changes
	// the subject.
	if prev >= 0 && utf8.RuneCountInString(strings.TrimSpace(text)) < 160 && !changesSubject(text) {
		s.addScaled(featuresOf(clip(msgs[prev].Text), true), 0.6)
		if prevAssistant >= 0 && strings.Contains(msgs[prevAssistant].Text, "```") {
			s[idx(Coding)] += 2
		}
	} else if prevAssistant >= 0 && strings.Contains(msgs[prevAssistant].Text, "```") && utf8.RuneCountInString(text) < 160 {
		s[idx(Coding)] += 1
	}
	best, bestScore := idx(Chat), 1.5 // chat unless something speaks louder
	for i, v := range s {
		if v > bestScore {
			best, bestScore = i, v
		}
	}
	r := Result{Category: All[best], Scores: s}
	r.Reason = All[best]
	return r
}

func idx(c string) int {
	for i, x := range All {
		if x == c {
			return i
		}
	}
	return len(All) - 1
}

type scores [7]float64

func (s *scores) add(o scores) {
	for i := range s {
		s[i] += o[i]
	}
}

func (s *scores) addScaled(o scores, f float64) {
	for i := range s {
		s[i] += o[i] * f
	}
}

func clip(s string) string {
	if len(s) <= maxScan {
		return s
	}
	cut := maxScan
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func changesSubject(t string) bool {
	l := strings.ToLower(t)
	for _, p := range []string{"unrelated", "different question", "another question", "new question", "change of subject", "off topic", "by the way"} {
		if strings.Contains(l, p) {
			return true
		}
	}
	return false
}

// instructionOf is the part of a message that asks for something: up to
// the first blank line, code fence or quoted block, at most 400 bytes.
func instructionOf(t string) string {
	end := len(t)
	head := t[:min(len(t), 420)]
	for _, sep := range []string{"\n\n", "```", "\n>", "\n---", ":\n"} {
		if i := strings.Index(head, sep); i >= 0 && i < end {
			end = i
		}
	}
	if end > 400 {
		end = 400
		for end > 0 && !utf8.RuneStart(t[end]) {
			end--
		}
	}
	if end < 12 && len(t) > end { // "Translate:" style: take the next line too
		end = min(len(t), 160)
		for end > 0 && end < len(t) && !utf8.RuneStart(t[end]) {
			end--
		}
	}
	return t[:end]
}

// featuresOf scores one message. lead marks the message being classified
// (its instruction counts fully); context messages count less.
func featuresOf(t string, lead bool) scores {
	var s scores
	instr := strings.ToLower(instructionOf(t))
	whole := strings.ToLower(t)
	payload := whole[min(len(instr), len(whole)):]
	_ = lead
	score := func(c string, v float64) { s[idx(c)] += v }

	// Instruction verbs and phrases, then domain vocabulary anywhere.
	var got [16]float64
	eachWordAt(instr, func(w string, at int) {
		for _, i := range wordIndex[w] {
			got[i] += lexicon[i].weight
		}
		for _, ph := range phraseIndex[w] {
			if strings.HasPrefix(instr[at:], ph.text) {
				got[ph.entry] += lexicon[ph.entry].weight
			}
		}
	})
	for _, ph := range loosePhrases {
		if strings.Contains(instr, ph.text) {
			got[ph.entry] += lexicon[ph.entry].weight
		}
	}
	for i, l := range lexicon {
		score(l.category, min(got[i], l.cap))
	}
	var dom [4]float64
	trace := false
	eachWordAt(whole, func(w string, at int) {
		for _, i := range domainIndex[w] {
			dom[i] += domain[i].weight
		}
		if !trace {
			end := at + len(w)
			trace = traceWords[w] ||
				(end < len(whole) && whole[end] == ':' && (w == "error" || w == "panic" || w == "fatal")) ||
				(end < len(whole) && whole[end] == '.' && (w == "java" || w == "com" || w == "org") && at >= 3 && whole[at-3:at] == "at ")
		}
	})
	for i, d := range domain {
		score(d.category, min(dom[i], d.cap))
	}

	// Code: fences, stack traces, inline code, code-shaped lines.
	if strings.Contains(t, "```") {
		score(Coding, 3.5)
	}
	if trace {
		score(Coding, 3)
	}
	if !strings.Contains(t, "```") {
		score(Coding, min(inlineCode(t)*1.5, 3))
		if codeLines(t) >= 3 {
			score(Coding, 2)
		}
	}

	// Math notation and numbers in the instruction.
	m := 0.0
	greek := hasScript(whole, unicode.Greek)
	prose := stripInlineCode(instr) // `a = b` in code is not an equation
	for _, r := range prose {
		if greek && (r == 'π' || r == '∑') {
			continue // a Greek letter in Greek text is not notation
		}
		switch r {
		case '∫', '√', '²', '³', '∑', 'π', '≤', '≥', '±', '∞', '×', '÷', '∂', '^', '≠', 'ⁿ', '₀', '₁':
			m += 1
		}
	}
	if strings.Contains(prose, "=") && digits(prose) > 0 {
		m++
	}
	if m > 0 {
		score(Math, min(2+m, 5))
	}
	if nums := numbers(prose); nums >= 3 {
		score(Math, min(float64(nums)*0.4, 2))
	}

	// Pasted material: something to work on rather than a question.
	if len(payload) > 300 {
		score(Summarize, 0.8)
		score(Extract, 0.8)
	}
	// A foreign script to be read, named language in the instruction.
	if namesLanguage(instr) {
		if foreignScript(whole) {
			score(Translate, 2.5)
		} else {
			score(Translate, 1.5)
		}
		// "Translate … into English": the named language makes the verb
		// decisive over any code or text that is only the material.
		if s[idx(Translate)] >= 5 {
			score(Translate, 4)
		}
	}
	if !lead {
		// Context (a system prompt): role-play set-ups.
		for _, p := range []string{"you are ", "stay in character", "role-play", "roleplay", "game master", "narrator"} {
			if strings.Contains(whole, p) {
				score(Creative, 2)
				break
			}
		}
	}
	// A question with nothing to work on is conversation.
	if len(payload) < 40 && strings.HasSuffix(strings.TrimSpace(whole), "?") {
		score(Chat, 1)
	}
	return s
}

type entry struct {
	category string
	weight   float64
	cap      float64
	words    []string
	phrases  []string
}

// lexicon: what the instruction asks for, in several languages.
var lexicon = []entry{
	{Translate, 5, 7, []string{"translate", "translated", "translating", "translation", "traduce", "traducir", "traduzca", "traduire", "traduis", "traduisez", "traduza", "traduzir", "traduci", "tradurre", "übersetze", "übersetzen", "übersetzung", "переведи", "переведите", "перевести", "перевод", "翻译", "翻譯", "翻訳", "번역", "ترجم", "ترجمة", "अनुवाद"},
		[]string{"how do i say", "how to say", "how would i say", "can't read", "cannot read", "can not read", "how would you say", "what does this say", "what does it say", "翻译", "翻訳", "訳して", "번역", "ترجم", "अनुवाद", "en español", "auf deutsch", "en français", "in italiano"}},
	{Translate, 2.5, 3, nil, []string{" mean in ", "what does \"", "what does '", "what does «", " same in "}},
	{Summarize, 5, 7, []string{"summarize", "summarise", "summarized", "summarised", "summary", "summarizing", "tldr", "gist", "condense", "recap", "synopsis", "zusammenfassen", "zusammenfassung", "resume", "resumir", "resuma", "resumen", "résume", "résumer", "résumez", "riassumi", "riassunto", "sintetizza", "кратко", "резюме", "перескажи", "总结", "摘要", "概括", "要約", "まとめて", "요약", "لخص", "ملخص", "सारांश"},
		[]string{"tl;dr", "key points", "main points", "main takeaways", "takeaways", "what was decided", "boil down", "in a nutshell", "fasse", "fass ", "zusammen", "in one line", "in one sentence", "in two sentences", "in three sentences", "in 3 sentences", "in 2 sentences", "bullet points", "short paragraph", "总结", "摘要", "要約", "まとめ", "요약"}},
	{Summarize, 1.5, 3, []string{"main", "complaints", "decisions", "overview", "shorten", "shorter", "boil", "briefly", "brief"}, []string{"one paragraph", "a paragraph", "a few sentences", "in short"}},
	{Extract, 4, 7, []string{"extract", "extraction", "extrais", "extrayez", "extrae", "extraer", "extraia", "estrai", "extrahiere", "extrahieren", "parse", "classify", "categorize", "categorise", "label", "sentiment", "spam", "tag", "entities", "提取", "抽出", "추출", "استخرج"},
		[]string{"as json", "in json", "json array", "json object", "as a json", "into json", "to json", "as csv", "a csv", "with columns", "markdown table", "into a table", "one of:", "answer with one word", "reply with the label", "label only", "pull every", "pull out", "pull all", "list all the", "list every", "list each", "add this to my calendar", "named entities", "fields:", "the following fields", "提取", "抽出", "추출"}},
	{Extract, 2, 3, []string{"json", "csv", "fields", "field", "columns", "null", "schema", "dates", "deadlines", "invoice", "receipt", "calendar"}, nil},
	{Creative, 2.5, 6, []string{"story", "stories", "poem", "poems", "poetry", "haiku", "haikus", "limerick", "song", "lyrics", "chorus", "verse", "sonnet", "speech", "toast", "tagline", "taglines", "slogan", "slogans", "brainstorm", "fairy", "fable", "bedtime", "rhyme", "rhyming", "jingle", "screenplay", "monologue", "roleplay", "character", "characters", "plot", "twist", "poema", "poème", "poésie", "poesía", "poesia", "cuento", "histoire", "gedicht", "geschichte", "storia", "racconto", "стих", "стихотворение", "рассказ", "сказку", "诗", "故事", "詩", "物語", "시", "이야기", "قصيدة", "कविता", "कहानी"},
		[]string{"write a", "write me a", "write three", "write two", "write five", "make up", "draft a", "come up with", "name ideas", "ideas for", "give me 5", "give me 8", "give me 10", "give me ten", "keep going", "continue the story", "once upon", "短い詩", "诗歌", "作首", "写一首", "書いて"}},
	{Coding, 2, 4, []string{"code", "function", "fonction", "funktion", "función", "função", "funzione", "skript", "código", "programm", "programme", "programa", "snippet", "script", "regex", "regexp", "dockerfile", "docker", "git", "npm", "pnpm", "pip", "bug", "debug", "refactor", "compile", "compiler", "script", "bash", "shell", "python", "javascript", "typescript", "java", "golang", "rust", "kotlin", "swift", "sql", "postgres", "mysql", "sqlite", "query", "flask", "django", "spring", "react", "node", "api", "endpoint", "backend", "frontend", "gunicorn", "nginx", "kubernetes", "kubectl", "terminal", "console", "stacktrace", "exception", "concurrency", "goroutine", "mutex", "deploy", "repo", "commit", "pandas", "dataframe", "html", "css", "json-schema", "yaml", "makefile", "linux", "unix", "cli", "variables", "env", "framework", "library", "class", "method", "lambda", "async", "thread", "server", "localhost", "port", "http", "https", "cors", "oauth", "jwt"},
		[]string{"fix it", "this code", "the code", "my code", "in python", "in go", "in rust", "write a function", "a python function", "502 bad gateway", "bad gateway", "npm start"}},
	{Math, 1.6, 6, []string{"probability", "calcula", "calcola", "calcolare", "berechnen", "рассчитай", "посчитай", "circle", "radius", "diameter", "círculo", "cercle", "kreis", "integral", "derivative", "differentiate", "integrate", "eigenvalues", "eigenvectors", "matrix", "prove", "proof", "theorem", "equation", "equations", "solve", "calculate", "compute", "percent", "percentage", "mortgage", "interest", "mean", "median", "deviation", "variance", "average", "formula", "irrational", "factorial", "combinations", "permutations", "ways", "ratio", "pace", "speed", "km/h", "mph", "vat", "odds", "expected", "statistics", "limit", "logarithm", "geometry", "area", "volume", "triangle", "algebra", "simplify", "dice", "gleichung", "berechne", "wahrscheinlichkeit", "combien", "calcule", "calculez", "calcular", "probabilidad", "ecuación", "probabilità", "вычисли", "уравнение", "вероятность", "计算", "方程", "概率", "確率", "計算", "확률"},
		[]string{"how much", "how many", "what's the probability", "what is the probability", "show the formula", "step by step", "per km", "per cent", "work out", "how long will", "how fast"}},
	{Chat, 1, 3, []string{"hey", "hi", "hello", "thanks", "thank", "advice", "recommend", "should", "explain", "why", "nervous", "feel", "feeling", "opinion", "think", "tips", "trick"},
		[]string{"how's your", "how are you", "what's the difference", "is it true", "is it actually", "like i'm", "what kind of", "qual è", "quelle est", "was ist", "qué es", "is that true"}},
}

// domain: vocabulary anywhere in the message, weaker than the instruction.
var domain = []entry{
	{Coding, 0.6, 2.5, []string{"def", "func", "return", "import", "const", "var", "let", "null", "undefined", "typeerror", "stack", "traceback", "select", "from", "where", "join", "int", "string", "void", "public", "private", "static", "println", "printf", "console", "error", "warn", "exit", "sudo", "echo", "cd", "ls", "grep"}, nil},
}

type phrase struct {
	text  string
	entry int
}

// phraseIndex keys phrases that start with a word by that word, so only
// phrases that could start at a word of the text are compared;
// loosePhrases (starting with a space or a quote, or not split into words
// such as CJK) are searched whole.
var phraseIndex, loosePhrases = func() (map[string][]phrase, []phrase) {
	idx := map[string][]phrase{}
	var loose []phrase
	for i, l := range lexicon {
		for _, p := range l.phrases {
			first := p
			if j := strings.IndexAny(p, " \"«:;"); j >= 0 {
				first = p[:j]
			}
			if first == "" || !isASCII(p) || strings.ContainsAny(first, "./-_") {
				loose = append(loose, phrase{p, i})
				continue
			}
			idx[first] = append(idx[first], phrase{p, i})
		}
	}
	return idx, loose
}()

// wordIndex and domainIndex map a word to the entries it counts for.
var wordIndex, domainIndex = func() (map[string][]int, map[string][]int) {
	wi, di := map[string][]int{}, map[string][]int{}
	for i, l := range lexicon {
		for _, w := range l.words {
			wi[w] = append(wi[w], i)
		}
	}
	for i, d := range domain {
		for _, w := range d.words {
			di[w] = append(di[w], i)
		}
	}
	return wi, di
}()

// traceWords are tokens of stack traces and error output.
var traceWords = map[string]bool{"traceback": true, "exception": true, "typeerror": true, "valueerror": true, "keyerror": true,
	"attributeerror": true, "indexerror": true, "importerror": true, "modulenotfounderror": true, "nullpointerexception": true,
	"illegalargumentexception": true, "segmentation": true, "uncaught": true, "syntaxerror": true, "referenceerror": true,
	"errno": true, "stacktrace": true, "goroutine": true, "sigsegv": true, "econnrefused": true, "enoent": true}

var languages = []string{"english", "french", "german", "spanish", "italian", "portuguese", "dutch", "russian", "chinese", "mandarin", "japanese", "korean", "arabic", "hindi", "greek", "turkish", "polish", "swedish", "norwegian", "danish", "finnish", "czech", "hebrew", "thai", "vietnamese", "indonesian", "ukrainian", "inglés", "anglais", "englisch", "inglese", "inglês", "français", "francés", "französisch", "español", "espagnol", "spanisch", "alemán", "allemand", "deutsch", "deutsche", "английский", "английски", "英語", "英文", "英语", "영어", "الإنجليزية", "अंग्रेज़ी", "portugués", "português", "portugiesisch"}

var languageSet = func() map[string]bool {
	m := map[string]bool{}
	for _, l := range languages {
		m[l] = true
	}
	return m
}()

var prepositions = map[string]bool{"into": true, "to": true, "in": true, "al": true, "en": true, "ins": true, "auf": true, "на": true, "natural": true}

// namesLanguage reports a target language in the instruction ("into
// German", "al inglés", "英語に").
func namesLanguage(instr string) bool {
	prev, found := "", false
	eachWordAt(instr, func(w string, _ int) {
		if found {
			return
		}
		if languageSet[w] && (prepositions[prev] || !isLatinWord(w)) {
			found = true
		}
		prev = w
	})
	if !found && !isASCII(instr) {
		for _, l := range languages {
			if !isLatinWord(l) && strings.Contains(instr, l) {
				return true
			}
		}
	}
	return found
}

func isLatinWord(s string) bool {
	for _, r := range s {
		if r > unicode.MaxLatin1 && !unicode.Is(unicode.Latin, r) {
			return false
		}
	}
	return true
}

// foreignScript reports a run of Greek, Cyrillic, Arabic, Hebrew, Devanagari,
// Thai, Hangul or CJK text.
func foreignScript(t string) bool {
	if isASCII(t) {
		return false
	}
	n := 0
	for _, r := range t {
		if unicode.In(r, unicode.Greek, unicode.Cyrillic, unicode.Arabic, unicode.Hebrew, unicode.Devanagari, unicode.Thai, unicode.Hangul, unicode.Han, unicode.Hiragana, unicode.Katakana) {
			n++
			if n >= 8 {
				return true
			}
		}
	}
	return false
}

// eachWordAt calls fn with each raw word of text and its byte offset.
func eachWordAt(t string, fn func(string, int)) {
	start := -1
	for i, r := range t {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			fn(t[start:i], start)
			start = -1
		}
	}
	if start >= 0 {
		fn(t[start:], start)
	}
}

func digits(t string) int {
	n := 0
	for i := 0; i < len(t); i++ {
		if t[i] >= '0' && t[i] <= '9' {
			n++
		}
	}
	return n
}

// numbers counts numbers (runs of digits not part of an identifier such as df1).
func numbers(t string) int {
	n, in := 0, false
	for i := 0; i < len(t); i++ {
		c := t[i]
		d := c >= '0' && c <= '9'
		if d && !in && (i == 0 || !(t[i-1] == '_' || t[i-1] >= 'a' && t[i-1] <= 'z' || t[i-1] >= 'A' && t[i-1] <= 'Z')) {
			n++
		}
		in = d || (in && (c == '.' || c == ','))
		if d && i > 0 && (t[i-1] == '_' || t[i-1] >= 'a' && t[i-1] <= 'z' || t[i-1] >= 'A' && t[i-1] <= 'Z') {
			in = true // inside an identifier: not a number
		}
	}
	return n
}

// codeLines counts lines that look like code: ending in ; { } or ), or
// starting with indentation and a keyword-ish token.
func codeLines(t string) int {
	n := 0
	for _, line := range strings.SplitN(t, "\n", 80) {
		l := strings.TrimRight(line, " \t\r")
		if l == "" {
			continue
		}
		switch l[len(l)-1] {
		case ';', '{', '}':
			n++
			continue
		}
		if (strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "\t")) && strings.ContainsAny(l, "=()") {
			n++
		}
	}
	return n
}

// inlineCode counts `spans` that look like code (calls, paths, assignments).
func inlineCode(t string) float64 {
	n := 0.0
	for {
		i := strings.IndexByte(t, '`')
		if i < 0 {
			return n
		}
		j := strings.IndexByte(t[i+1:], '`')
		if j < 0 {
			return n
		}
		span := t[i+1 : i+1+j]
		switch {
		case strings.Contains(span, "(") && strings.Contains(span, ")"):
			n += 1.7 // a call
		case strings.ContainsAny(span, "=._/$<>[]{}") || strings.Contains(span, " "):
			n++
		}
		t = t[i+2+j:]
	}
}

func hasScript(t string, tab *unicode.RangeTable) bool {
	if isASCII(t) {
		return false
	}
	n := 0
	for _, r := range t {
		if unicode.Is(tab, r) {
			if n++; n >= 8 {
				return true
			}
		}
	}
	return false
}

func stripInlineCode(t string) string {
	if strings.Count(t, "`") < 2 {
		return t
	}
	var b strings.Builder
	in := false
	for _, r := range t {
		if r == '`' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isASCII(t string) bool {
	for i := 0; i < len(t); i++ {
		if t[i] >= 0x80 {
			return false
		}
	}
	return true
}
