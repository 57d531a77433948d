using Crm.Cli;

// crm token --tenant <id> [--scopes "a b"] [--lifetime 15m]  prints a signed identity token (local use; at most 12h)
// crm demo  [--contacts url] [--delivery url]            creates and fills the demo workspace, sends through Delivery
// crm fakes [--twilio-port 5990] [--smtp-port 2525] [--kakao-port 5991]   the loopback Twilio, SMTP and KakaoTalk (NHN Cloud) fakes of the demo
// crm segments-demo --api-key crm_... [--gateway url] [--rebuild yes]  the demo shop's RFM report and a behaviour segment, through the gateway
var command = args.Length > 0 ? args[0] : "help";
var options = Options.Parse(args.Skip(1).ToArray());
switch (command)
{
    case "token":
        TimeSpan lifetime;
        try
        {
            lifetime = Tokens.ParseLifetime(options.Get("lifetime", "15m"));
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            return 2;
        }
        Console.WriteLine(Tokens.Issue(options.Get("tenant", "demo"), options.Get("scopes", "*").Split(' '), lifetime));
        return 0;
    case "demo":
        await Demo.RunAsync(new Uri(options.Get("contacts", "http://127.0.0.1:5101")), options.Get("tenant", "demo"));
        if (options.Get("delivery", "") is { Length: > 0 } delivery)
            await DeliveryDemo.RunAsync(new Uri(options.Get("contacts", "http://127.0.0.1:5101")), new Uri(delivery), options.Get("tenant", "demo"),
                twilioUrl: options.Get("twilio", "http://127.0.0.1:5990"), smtpPort: int.Parse(options.Get("smtp-port", "2525"), System.Globalization.CultureInfo.InvariantCulture),
                kakaoUrl: options.Get("kakao", "http://127.0.0.1:5991"));
        return 0;
    case "segments-demo":
        await SegmentationDemo.RunAsync(new Uri(options.Get("gateway", "http://127.0.0.1:8081")), options.Get("api-key", ""), options.Get("rebuild", "no") == "yes");
        return 0;
    case "fakes":
        await Fakes.RunAsync(int.Parse(options.Get("twilio-port", "5990"), System.Globalization.CultureInfo.InvariantCulture),
            int.Parse(options.Get("smtp-port", "2525"), System.Globalization.CultureInfo.InvariantCulture),
            int.Parse(options.Get("kakao-port", "5991"), System.Globalization.CultureInfo.InvariantCulture));
        return 0;
    default:
        Console.Error.WriteLine("usage: crm token --tenant <id> [--scopes \"contacts.read contacts.write\"] [--lifetime 15m] | crm demo [--contacts <url>]");
        return 2;
}
