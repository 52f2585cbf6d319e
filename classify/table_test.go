package classify

import (
	"testing"
)

// Requests in other words than the dev set's, per category and language.
var table = []struct {
	want string
	msgs []Message
}{
	{Coding, []Message{{"user", "My React component re-renders forever when I call setState inside useEffect. Why?"}}},
	{Coding, []Message{{"user", "Écris une fonction JavaScript qui supprime les doublons d'un tableau."}}},
	{Coding, []Message{{"user", "How can I make this SQL query faster? SELECT * FROM events WHERE user_id = 42 ORDER BY created_at DESC;"}}},
	{Coding, []Message{{"user", "kubectl get pods shows CrashLoopBackOff for my api deployment, how do I see why"}}},
	{Coding, []Message{{"user", "Schreib mir ein Bash-Skript, das alle .log Dateien älter als 7 Tage löscht."}}},
	{Math, []Message{{"user", "Solve for x: 3x + 7 = 22"}}},
	{Math, []Message{{"user", "What is the probability of drawing two aces in a row from a shuffled deck without replacement?"}}},
	{Math, []Message{{"user", "Calcula el área de un círculo de radio 7 cm."}}},
	{Math, []Message{{"user", "If I invest 5000 at 4% compounded monthly, how much will I have after 10 years?"}}},
	{Math, []Message{{"user", "Вычисли производную функции y = sin(x) * x^2"}}},
	{Creative, []Message{{"user", "Compose a sonnet about autumn leaves falling on an empty playground."}}},
	{Creative, []Message{{"user", "Write me a funny toast for my parents' 30th anniversary."}}},
	{Creative, []Message{{"user", "Schreib ein kurzes Gedicht über den Regen in Hamburg."}}},
	{Creative, []Message{{"user", "Come up with 6 names for a coffee truck that only sells cold brew."}}},
	{Creative, []Message{{"system", "You are Captain Vega of the starship Aurora. Stay in character."}, {"user", "Captain, the shields are failing! What do we do?"}}},
	{Summarize, []Message{{"user", "Give me the key points of this report:\n\n" + longText}}},
	{Summarize, []Message{{"user", "Résume ce texte en trois phrases :\n\n" + longText}}},
	{Summarize, []Message{{"user", "Can you boil this down to one paragraph for my boss?\n\n" + longText}}},
	{Summarize, []Message{{"user", "请总结以下内容：\n\n" + longText}}},
	{Extract, []Message{{"user", "Get all email addresses and phone numbers from the text below and return them as JSON.\n\n" + longText}}},
	{Extract, []Message{{"user", "Classify these tickets as BUG, FEATURE or QUESTION:\n1. App crashes on login\n2. Add dark mode\n3. How do I reset my password?"}}},
	{Extract, []Message{{"user", "Extrae las fechas y los importes de esta factura y devuélvelos en una tabla."}}},
	{Extract, []Message{{"user", "Parse this address into street, city, postcode and country fields: 10 Downing Street, London SW1A 2AA, UK"}}},
	{Translate, []Message{{"user", "Translate 'see you tomorrow at the station' into Japanese."}}},
	{Translate, []Message{{"user", "Übersetze bitte ins Englische: Ich freue mich auf unser Treffen nächste Woche."}}},
	{Translate, []Message{{"user", "Traduis en espagnol : « Le musée est fermé le lundi. »"}}},
	{Translate, []Message{{"user", "What does 'Schadenfreude' mean in English?"}}},
	{Translate, []Message{{"user", "이 문장을 영어로 번역해 주세요: 오늘 날씨가 정말 좋네요."}}},
	{Chat, []Message{{"user", "What's a good way to stay motivated when learning a new language?"}}},
	{Chat, []Message{{"user", "Do cats really always land on their feet?"}}},
	{Chat, []Message{{"user", "Pourquoi la tour de Pise penche-t-elle ?"}}},
	{Chat, []Message{{"user", "I had such a long day. Tell me something nice?"}}},
	{Chat, []Message{{"user", "Should I learn guitar or piano first as an adult beginner?"}}},
	// Follow-ups read in context.
	{Translate, []Message{{"user", "Translate 'good morning' into French."}, {"assistant", "Bonjour."}, {"user", "and into Italian?"}}},
	{Coding, []Message{{"user", "Write a Go function that reverses a slice."}, {"assistant", "```go\nfunc Reverse(s []int) {}\n```"}, {"user", "make it generic please"}}},
	{Chat, []Message{{"user", "Write a haiku about frogs."}, {"assistant", "Green pond..."}, {"user", "thanks! different question: is it safe to swim in lakes in October?"}}},
}

const longText = `The quarterly results show revenue grew 12% year over year to 4.2 million, driven mostly by the new subscription tier. Costs rose faster than expected because of cloud spending, which the team plans to cut by moving batch jobs to reserved instances. Hiring will pause until the second quarter, except for two support roles. The board asked for a plan to reach profitability within eighteen months, and the CFO will present options at the next meeting. Contact: jane.doe@example.com, +44 20 7946 0958.`

func TestTable(t *testing.T) {
	wrong := 0
	for _, c := range table {
		got := Classify(c.msgs).Category
		if got != c.want {
			wrong++
			t.Errorf("%q: want %s, got %s", c.msgs[len(c.msgs)-1].Text[:min(60, len(c.msgs[len(c.msgs)-1].Text))], c.want, got)
		}
	}
	t.Logf("%d/%d right", len(table)-wrong, len(table))
}
