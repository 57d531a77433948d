using Crm.Cli;

// crm token --tenant <id> [--scopes "a b"] [--hours N]   prints a signed identity token (local use)
// crm demo  [--contacts http://127.0.0.1:5101]           creates and fills the demo workspace
var command = args.Length > 0 ? args[0] : "help";
var options = Options.Parse(args.Skip(1).ToArray());
switch (command)
{
    case "token":
        Console.WriteLine(Tokens.Issue(options.Get("tenant", "demo"), options.Get("scopes", "*").Split(' '), double.Parse(options.Get("hours", "12"), System.Globalization.CultureInfo.InvariantCulture)));
        return 0;
    case "demo":
        await Demo.RunAsync(new Uri(options.Get("contacts", "http://127.0.0.1:5101")), options.Get("tenant", "demo"));
        return 0;
    default:
        Console.Error.WriteLine("usage: crm token --tenant <id> [--scopes \"contacts.read contacts.write\"] | crm demo [--contacts <url>]");
        return 2;
}
